Feature: A node that drops off the network
  A compute node whose link goes down mid-answer gives a clear error within seconds, is
  reported unreachable, and works again once its link is back.

  Scenario: The link of a compute node is cut during inference
    Given the nodes "workstation" and "mac" are registered with a running queen
    When I start `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 3000 --temperature 0 --prompt "Write a long story about a cat."`
    And its first tokens have arrived
    And the link of "workstation" goes down
    And the command ends
    Then it exits with code 1
    And it ended within 15 s of the link going down
    And stderr contains "lost contact with workstation"
    When I run `rbee setup list-nodes`
    Then the line of "workstation" says "unreachable"
    When the link of "workstation" comes back
    And I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 0
    When I run `rbee setup list-nodes`
    Then the line of "workstation" says "reachable"

  Scenario: A node whose link is down before the request
    Given the nodes "workstation" and "mac" are registered with a running queen
    And the link of "workstation" goes down
    When I run `rbee infer --node workstation --model hf:test/SmolLM2:Q4_1 --max-tokens 8 --prompt hi`
    Then it exits with code 1
    And it took less than 20 s
    And stderr contains "SSH_FAILED"
    When I run `rbee setup list-nodes`
    Then the line of "workstation" says "unreachable"
