Feature: Inference on the compute nodes
  `rbee infer` on the control node streams tokens from a model on another machine: the
  queen starts the node's hive over SSH, the hive downloads the model, checks it fits,
  spawns a worker and the tokens come back across the bridge.

  Background:
    Given a running queen
    And the nodes "workstation" and "mac" are registered

  Scenario: Cold start on a compute node, then a warm start
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 24 --temperature 0 --prompt "Write a short story about a cat."`
    Then it exits with code 0
    And stdout is a coherent answer
    And stderr contains "Starting rbee-hive on workstation over SSH (10.99.0.2)"
    And stderr contains "Downloading 100%"
    And stderr contains "Loading 30/30 layers"
    And the catalog of "workstation" holds "hf:test/SmolLM2:Q4_1"
    And "workstation" runs 1 hive and 1 worker
    And "mac" runs no rbee process
    When I note the processes on "workstation"
    And I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 24 --temperature 0 --prompt "Write a short story about a dog."`
    Then it exits with code 0
    And stdout is a coherent answer
    And stderr contains "Reusing idle worker"
    And stderr does not contain "Downloading"
    And the hive and the worker on "workstation" are the ones noted
    And the hub sent "smollm2-135m-instruct-q4_1.gguf" 1 time

  Scenario: A slow download shows its progress as it goes
    Given the hub sends 25 MB/s
    When I run `rbee infer --node mac --model hf:test/SmolLM2:Q8_0 --max-tokens 8 --temperature 0 --prompt hi`
    Then it exits with code 0
    And stderr shows the download at 0 %, each quarter and 100 %

  Scenario: Two nodes serve different models at the same time
    When I start `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 300 --temperature 0 --prompt "Write a long story about a cat."`
    And its first tokens have arrived
    And I run `rbee infer --node mac --model hf:test/SmolLM2:Q8_0 --max-tokens 24 --temperature 0 --prompt "Write a short story about a dog."`
    Then it exits with code 0
    And stdout is a coherent answer
    When I run `rbee workers list`
    Then stdout contains "workstation"
    And stdout contains "hf:test/SmolLM2:Q4_1"
    And stdout contains "mac"
    And stdout contains "hf:test/SmolLM2:Q8_0"
    When I press Ctrl+C
    Then it exits with code 130

  Scenario: Eight concurrent requests to a warm node share its worker's slots and all complete
    Given a worker on "workstation" has answered once
    When I run 8 times at once `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 32 --temperature 0 --prompt "Tell me about bees."`
    Then "workstation" runs 1 hive and 1 worker

  Scenario: Eight concurrent cold starts of one model share one worker
    When I run 8 times at once `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --temperature 0 --prompt hi`
    Then "workstation" runs 1 hive and 1 worker
