Feature: Every failing HTTP answer is the error envelope
  Queen, hives and workers answer every error with
  {"error": {"code": "SOME_CODE", "message": "...", "details": {...}}} and a fitting status.
  (Every other HTTP answer the suite reads is checked the same way.)

  Scenario: Failing requests to the queen, a hive and a worker
    Given the nodes "workstation" and "mac" are registered with a running queen
    And a worker on "workstation" has answered once
    Then these requests fail with the error envelope:
      | daemon           | method | path                         | body                                    | status | code             |
      | queen            | POST   | /v2/registry/beehives/remove | {"node_name": "attic"}                  | 404    | NODE_NOT_FOUND   |
      | queen            | POST   | /v2/registry/beehives/add    | {"node_name": "x"}                      | 400    | INVALID_REQUEST  |
      | queen            | DELETE | /v2/tasks/no-such-task       |                                         | 404    | JOB_NOT_FOUND    |
      | queen            | POST   | /v2/workers/shutdown         | {"worker_id": "nobody"}                 | 404    | WORKER_NOT_FOUND |
      | queen            | GET    | /v2/no-such-endpoint         |                                         | 404    | UNKNOWN_ENDPOINT |
      | hive             | GET    | /v1/workers/list             |                                         | 401    | INVALID_API_KEY  |
      | hive with key    | POST   | /v1/workers/spawn            | {"model_ref": "nonsense"}               | 400    | INVALID_REQUEST  |
      | hive with key    | POST   | /v1/workers/shutdown         | {"worker_id": "nobody"}                 | 404    | WORKER_NOT_FOUND |
      | worker           | POST   | /v1/inference                | {"prompt": "hi"}                        | 401    | INVALID_API_KEY  |
      | worker with key  | POST   | /v1/inference                | {"prompt": "hi", "max_tokens": "many"}  | 400    | INVALID_REQUEST  |
      | worker with key  | DELETE | /v1/inference/no-such-job    |                                         | 404    | JOB_NOT_FOUND    |
