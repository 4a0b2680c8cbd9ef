Feature: Placement when no node is named
  Without --node, the queen chooses among every registered node and the control node
  itself: an idle worker that has the model, else a node whose catalog has the model and
  that passes the preflight, else the node with the most free memory. It says why.

  Background:
    Given the nodes "workstation" and "mac" are registered with a running queen
    And the queen's own hive may use 1000 MB
    And the hive on "workstation" runs with RBEE_HIVE_MEMORY_LIMIT_MB=3000
    And the hive on "mac" runs with RBEE_HIVE_MEMORY_LIMIT_MB=2000

  Scenario: With no model anywhere, the node with the most free memory
    When I run `rbee infer --model hf:test/SmolLM2:Q4_1 --max-tokens 16 --temperature 0 --prompt "Write a short story about a cat."`
    Then it exits with code 0
    And stdout is a coherent answer
    And stderr contains "placing on workstation: most free memory for cpu (3000 MB)"
    And the catalog of "workstation" holds "hf:test/SmolLM2:Q4_1"

  Scenario: A node whose catalog has the model wins over more memory
    Given the hive on "mac" runs with RBEE_HIVE_IDLE_TIMEOUT=1s
    And a worker on "mac" has answered once
    And within 30 s "mac" runs 1 hive and 0 workers
    When I run `rbee infer --model hf:test/SmolLM2:Q8_0 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And stderr contains "placing on mac: its catalog has the model and it passes the preflight"
    And stderr does not contain "Downloading"

  Scenario: A catalog model that fails the preflight does not count
    Given a worker on "mac" has answered once
    And the queen receives SIGTERM
    And the hive on "mac" runs with RBEE_HIVE_MEMORY_LIMIT_MB=50
    And a running queen
    And the queen's own hive may use 1000 MB
    When I run `rbee infer --model hf:test/SmolLM2:Q8_0 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And stderr contains "placing on workstation: most free memory for cpu (3000 MB)"

  Scenario: An idle worker that has the model wins over everything
    Given a worker on "mac" has answered once
    When I run `rbee infer --model hf:test/SmolLM2:Q8_0 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And stderr contains "placing on mac: an idle worker has the model"
    And stderr contains "Reusing idle worker"

  Scenario: OpenAI clients are placed the same way
    Given a worker on "mac" has answered once
    When I ask the queen's OpenAI API for a chat completion with model "hf:test/SmolLM2:Q8_0"
    Then the answer is a chat completion with coherent text
    And "mac" runs 1 hive and 1 worker
    And "workstation" runs 1 hive and 0 workers

  Scenario: Ollama clients see every node's models and are placed the same way
    Given a worker on "mac" has answered once
    When the ollama package chats with model "hf:test/SmolLM2:Q8_0" through the queen
    Then the ollama answer is coherent text of 16 tokens
    And the ollama package listed "hf:test/SmolLM2:Q8_0" and "mac/hf:test/SmolLM2:Q8_0"
    And the ollama package saw the model running on "mac"
    And "mac" runs 1 hive and 1 worker
    And "workstation" runs 1 hive and 0 workers
