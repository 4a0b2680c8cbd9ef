Feature: Lifecycle of the processes rbee starts
  The queen owns the hives it started, a hive owns its workers; one SIGTERM to the queen
  stops them all, on every node. Catalogs on disk survive.

  Scenario: The hive stays up across requests
    Given the nodes "workstation" and "mac" are registered with a running queen
    And a worker on "workstation" has answered once
    When I note the processes on "workstation"
    And I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hello`
    Then it exits with code 0
    And the hive and the worker on "workstation" are the ones noted

  Scenario: SIGTERM to the queen stops every hive and worker on every node
    Given the nodes "workstation" and "mac" are registered with a running queen
    And a worker on "workstation" has answered once
    And a worker on "mac" has answered once
    Then "workstation" runs 1 hive and 1 worker
    And "mac" runs 1 hive and 1 worker
    When the queen receives SIGTERM
    Then the queen exits with code 0
    And "workstation" runs no rbee process
    And "mac" runs no rbee process
    And the catalog of "workstation" holds "hf:test/SmolLM2:Q4_1"
    Given a running queen
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And stderr contains "is in the catalog of workstation"
    And the hub sent "smollm2-135m-instruct-q4_1.gguf" 1 time

  Scenario: Ephemeral mode: without a queen, rbee starts one and stops everything after
    When I run `rbee setup add-node --name workstation --ssh-host 10.99.0.2 --ssh-user root --install-path /opt/rbee`
    Then it exits with code 0
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 16 --temperature 0 --prompt "Write a short story about a cat."`
    Then it exits with code 0
    And stdout is a coherent answer
    And no queen runs on the control node
    And "workstation" runs no rbee process

  Scenario: Persistent mode: rbee leaves the running queen and its hives up
    Given the nodes "workstation" and "mac" are registered with a running queen
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And the queen still runs
    And "workstation" runs 1 hive and 1 worker

  Scenario: Following a node's logs
    Given the nodes "workstation" and "mac" are registered with a running queen
    And a worker on "workstation" has answered once
    When I start `rbee logs --node workstation --follow`
    Then its output soon shows "listening on"
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 4 --prompt hi`
    Then it exits with code 0
    And the followed logs soon show a new line

  Scenario: Workers' health and shutting one down
    Given the nodes "workstation" and "mac" are registered with a running queen
    And a worker on "workstation" has answered once
    When I run `rbee workers health --node workstation`
    Then it exits with code 0
    And stdout contains "idle"
    When I shut down the worker on "workstation" with `rbee workers shutdown --id <id>`
    Then it exits with code 0
    And within 10 s "workstation" runs 1 hive and 0 workers
