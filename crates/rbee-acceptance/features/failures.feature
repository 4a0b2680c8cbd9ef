Feature: Failures the user sees
  Every failure ends with one clear message and a suggestion, exit code 1 (130 when the
  user interrupts), and never a panic or a hang.

  Background:
    Given the nodes "workstation" and "mac" are registered with a running queen

  Scenario: A busy worker with a full queue is retried after 1, 2 and 4 seconds, then rbee gives up
    Given the queen starts workers with 1 slot and queues at most 0 tasks per worker
    When I start `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 3000 --temperature 0 --prompt "Write a long story about a cat."`
    And its first tokens have arrived
    And I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 4 --prompt hi`
    Then it exits with code 1
    And stderr contains "retrying in 1 s (1/3)"
    And stderr contains "retrying in 2 s (2/3)"
    And stderr contains "retrying in 4 s (3/3)"
    And stderr contains "another node"

  Scenario: A hive that stops answering is given 3 attempts
    Given a worker on "workstation" has answered once
    And the hive on "workstation" is frozen with SIGSTOP
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 4 --prompt hi`
    Then it exits with code 1
    And stderr contains "did not answer (attempt 3/3)"
    And stderr contains "CONNECTION_TIMEOUT"

  Scenario: A hive of another version is refused
    Given "mac" already runs a hive of version 9.9.9 on port 9200
    When I run `rbee infer --node mac --model hf:test/SmolLM2:Q4_1 --max-tokens 4 --prompt hi`
    Then it exits with code 1
    And stderr contains "VERSION_MISMATCH"
    And stderr contains "rbee setup install --node mac"

  Scenario: A wrong API key
    Given the queen requires the API key "s3cret"
    And my configuration holds the API key "wrong"
    When I run `rbee workers list`
    Then it exits with code 1
    And stderr contains "Authentication failed"
    And stderr contains ".config/rbee/config.toml"

  Scenario: A download reset at 40 % resumes where it stopped
    Given the hub resets the first download at 40 %
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --temperature 0 --prompt hi`
    Then it exits with code 0
    And stderr contains "retrying in 100 ms"
    And the hub was asked to resume "smollm2-135m-instruct-q4_1.gguf" from 40 %
    And the catalog of "workstation" holds "hf:test/SmolLM2:Q4_1"

  Scenario: A download that fails 6 times is given up
    Given the hub breaks every download
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And stderr contains "DOWNLOAD_FAILED"
    And the hub sent "smollm2-135m-instruct-q4_1.gguf" 6 times
    And the catalog of "workstation" is empty
    And "workstation" runs 1 hive and 0 workers

  Scenario: A download with corrupted content is never registered
    Given the hub corrupts every download
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And stderr contains "DOWNLOAD_FAILED"
    And stderr contains "sha256"
    And the catalog of "workstation" is empty
    And "workstation" runs 1 hive and 0 workers

  Scenario: A model that does not fit in RAM
    Given the hive on "workstation" runs with RBEE_HIVE_MEMORY_LIMIT_MB=50
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And stderr contains "INSUFFICIENT_RAM"
    And stderr contains "smaller quantization"
    And "workstation" runs 1 hive and 0 workers

  Scenario: A backend the node does not have
    When I run `rbee infer --node workstation --backend cuda --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And stderr contains "BACKEND_UNAVAILABLE"
    And stderr contains "cuda"

  Scenario: A worker that loads for too long
    Given the queen gives workers 1ms to load
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And stderr contains "LOADING_TIMEOUT"
    And stderr contains "rbee logs --node workstation"

  Scenario: The worker dies in the middle of an answer
    When I start `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 3000 --temperature 0 --prompt "Write a long story about a cat."`
    And its first tokens have arrived
    And the worker on "workstation" is killed with SIGKILL
    And the command ends
    Then it exits with code 1
    And the partial answer is saved with its token count
    And within 10 s the queen lists no worker on "workstation"

  Scenario: Ctrl+C cancels the answer on the worker
    When I start `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 3000 --temperature 0 --prompt "Write a long story about a cat."`
    And its first tokens have arrived
    And I press Ctrl+C
    Then it exits with code 130
    And stderr contains "Canceled."
    And within 10 s the worker on "workstation" is idle

  Scenario: An idle worker is stopped after the idle timeout; the hive stays
    Given the hive on "workstation" runs with RBEE_HIVE_IDLE_TIMEOUT=2s
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And within 30 s "workstation" runs 1 hive and 0 workers
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    And stderr contains "Spawning a worker"

  Scenario: A frozen idle worker fails the request within 10 s
    Given a worker on "workstation" has answered once
    And the worker on "workstation" is frozen with SIGSTOP
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 4 --prompt hi`
    Then it exits with code 1
    And it took less than 10 s
    And stderr contains "the worker on workstation did not take the request"
    And stderr contains "no answer within 5 s"

  Scenario: The health monitor drops a frozen worker
    Given the hive on "workstation" runs with RBEE_HIVE_HEALTH_INTERVAL=300ms
    And a worker on "workstation" has answered once
    When the worker on "workstation" is frozen with SIGSTOP
    Then within 30 s "workstation" runs 1 hive and 0 workers
    And within 10 s the queen lists no worker on "workstation"
