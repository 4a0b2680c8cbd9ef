Feature: Models across the nodes, what is loaded, and a chat in the terminal
  `rbee models` pulls, lists, shows and removes models on the compute nodes; `rbee ps`
  shows the workers loaded on every node; `rbee chat` talks with a model on a node, turn
  after turn, in a terminal.

  Background:
    Given a running queen
    And the nodes "workstation" and "mac" are registered

  Scenario: A model is pulled onto a node, listed, shown and removed
    When I run `rbee models pull hf:test/SmolLM2:Q4_1 --node workstation`
    Then it exits with code 0
    And stdout contains "Pulled hf:test/SmolLM2:Q4_1 onto workstation"
    And stderr contains "Starting rbee-hive on workstation over SSH"
    And stderr contains "Downloading 100%"
    And the catalog of "workstation" holds "hf:test/SmolLM2:Q4_1"
    And the catalog of "mac" is empty
    When I run `rbee models list`
    Then it exits with code 0
    And stdout has a line with "workstation", "Q4_1" and "hf:test/SmolLM2:Q4_1"
    And stderr contains "workstation: 1 model(s)"
    And stderr contains "mac: 0 model(s)"
    When I run `rbee models show hf:test/SmolLM2:Q4_1`
    Then it exits with code 0
    And stdout has a line with "node" and "workstation"
    And stdout has a line with "architecture" and "llama"
    When I run `rbee models rm hf:test/SmolLM2:Q4_1 --node workstation`
    Then it exits with code 0
    And stdout contains "and deleted its file"
    And the catalog of "workstation" is empty
    And no model file is left on "workstation"

  Scenario: rbee ps shows the workers loaded on every node
    Given a worker on "mac" has answered once
    When I run `rbee ps`
    Then it exits with code 0
    And stdout has a line with "mac", "idle", " 0/" and "hf:test/SmolLM2:Q8_0"
    And stdout does not contain "workstation"

  Scenario: A chat in a terminal with a model on a node
    When I chat in a terminal with `rbee chat --node workstation --model hf:test/SmolLM2:Q4_1 --temperature 0 --max-tokens 48 --system "Be brief."`
    And I type "What is the capital of France?" and the answer ends
    Then the chat's answer contains "Paris"
    When I type "/exit" and the chat ends
    Then "workstation" runs 1 hive and 1 worker
