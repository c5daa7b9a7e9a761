"""A task class with a wrong setting, for the CLI's bad-input test."""

import dagmill


class Soon(dagmill.tasks.TaskPickle):
    timeout = "soon"

    def run(self):
        self.save(0)
