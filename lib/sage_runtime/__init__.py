"""What every SAGE process needs from the machine it runs on, whichever image it is in: the CPUs
its container may use (cgroup quota), the termination message Kubernetes shows, and the settings
types the processes share. Pure apart from reading and writing those files."""
