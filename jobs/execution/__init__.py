"""Running a job on a worker: the runner, the job's bash variables and the sandbox."""
