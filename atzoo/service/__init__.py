"""The shared runner as a service: a crash-safe job queue in a runner directory, and workers that run
each job in its own subprocess (torchrun for several GPUs). See docs/service.md."""

from atzoo.service.control import (cancel_job, get_job, job_log_path, job_row, queue_rows, retry_job, submit_train,
                                   submit_verify)
from atzoo.errors import ServiceError
from atzoo.service.queue import Job, Queue, open_queue
from atzoo.service.runnerdir import RunnerDir, default_runner_dir, open_runner_dir
from atzoo.service.worker import Worker, WorkerOptions, WorkerSummary

__all__ = ["Job", "Queue", "RunnerDir", "ServiceError", "Worker", "WorkerOptions", "WorkerSummary", "cancel_job",
           "default_runner_dir", "get_job", "job_log_path", "job_row", "open_queue", "open_runner_dir", "queue_rows",
           "retry_job", "submit_train", "submit_verify"]
