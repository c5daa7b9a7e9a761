"""Tasks the CLI tests run by path."""

import dagmill


class Numbers(dagmill.tasks.TaskPickle):
    n = dagmill.IntParameter(default=5)

    def run(self):
        self.save(list(range(self.n)))


@dagmill.requires(Numbers)
class Total(dagmill.tasks.TaskJson):
    def run(self):
        self.save({"total": sum(self.inputLoad())})


@dagmill.requires(Numbers)
class Broken(dagmill.tasks.TaskJson):
    def run(self):
        raise ValueError("the numbers do not add up")


class Greedy(dagmill.tasks.TaskPickle):
    resources = {"memory": "1Pi"}

    def run(self):
        self.save(0)
