Feature: Setting up the nodes of the lab
  The user registers each machine once. rbee tests the SSH connection before it saves
  anything, and can install rbee on a node over SSH.

  Background:
    Given a running queen

  Scenario: The compute nodes are separate hosts on a private network
    Then "workstation" answers over SSH at 10.99.0.2 with the hostname "workstation"
    And "mac" answers over SSH at 10.99.0.3 with the hostname "mac"

  Scenario: Adding a reachable node saves it
    When I run `rbee setup add-node --name workstation --ssh-host 10.99.0.2 --ssh-user root --install-path /opt/rbee`
    Then it exits with code 0
    And stderr contains "Testing SSH connection to 10.99.0.2"
    When I run `rbee setup list-nodes`
    Then stdout contains "workstation"
    And stdout contains "10.99.0.2"

  Scenario: A node's hive settings are saved with it and can be changed
    When I run `rbee setup add-node --name workstation --ssh-host 10.99.0.2 --ssh-user root --install-path /opt/rbee --worker-slots 2`
    Then it exits with code 0
    When I run `rbee setup set-node --name workstation --idle-timeout 30m --worker-slots 3`
    Then it exits with code 0
    And stdout contains "workstation's hive will start with --idle-timeout 1800s --worker-slots 3"
    When I run `rbee setup list-nodes --json`
    Then stdout contains ""worker_slots":3"
    When I run `rbee setup set-node --name workstation --worker-slots 0`
    Then it exits with code 1
    And stderr contains "--worker-slots"

  Scenario: A node whose SSH connection fails is not saved
    Given sshd on "mac" is stopped
    When I run `rbee setup add-node --name mac --ssh-host 10.99.0.3 --ssh-user root --install-path /opt/rbee`
    Then it exits with code 1
    And stderr contains "SSH to mac failed"
    And stderr contains "Connection refused"
    When I run `rbee setup list-nodes`
    Then stdout does not contain "mac"

  Scenario: Removing a node
    Given the node "workstation" is registered
    When I run `rbee setup remove-node --name workstation`
    Then it exits with code 0
    When I run `rbee setup list-nodes`
    Then stdout does not contain "workstation"

  Scenario: Installing rbee on a node over SSH
    Given a git repository of rbee with a branch "stable"
    When I run `rbee setup add-node --name workstation --ssh-host 10.99.0.2 --ssh-user root --git-repo {repo} --git-branch stable --install-path {workstation}/rbee`
    Then it exits with code 0
    When I run `rbee setup install --node workstation`
    Then it exits with code 0
    And stderr contains "checked out"
    And "workstation" has "{workstation}/rbee/target/release/rbee-hive"
    And "workstation" has "{workstation}/rbee/target/release/llm-worker-rbee"

  Scenario: Inference on a node nobody registered
    When I run `rbee infer --node attic --model hf:test/SmolLM2:Q4_1 --prompt hi`
    Then it exits with code 1
    And stderr contains "rbee setup add-node --name attic"
