"""A small, real ML pipeline: raw data → preprocess → features → train → evaluate.

The data is scikit-learn's wine dataset (it ships inside scikit-learn, nothing is
downloaded). Run it with:

    dagmill preview examples/ml/pipeline.py:Evaluate
    dagmill run examples/ml/pipeline.py:Evaluate --workers 2
    dagmill run examples/ml/pipeline.py:Evaluate -p model=forest
"""

from __future__ import annotations

import dagmill


class RawData(dagmill.tasks.TaskCSVPandas):
    """The raw table, as a CSV, the way it would arrive from a source system."""

    def run(self) -> None:
        from sklearn.datasets import load_wine

        frame = load_wine(as_frame=True).frame
        self.save(frame)


@dagmill.requires(RawData)
class Preprocess(dagmill.tasks.TaskPqPandas):
    """Drop incomplete rows and standardise the measurements."""

    scale = dagmill.BoolParameter(default=True)

    def run(self) -> None:
        df = self.inputLoad().dropna()
        if self.scale:
            cols = [c for c in df.columns if c != "target"]
            df[cols] = (df[cols] - df[cols].mean()) / df[cols].std()
        self.save(df)


@dagmill.requires(Preprocess)
class Features(dagmill.tasks.TaskPqPandas):
    """Add pairwise products of the most informative measurements."""

    interactions = dagmill.IntParameter(default=3)

    def run(self) -> None:
        df = self.inputLoad()
        top = [
            "alcohol",
            "flavanoids",
            "color_intensity",
            "proline",
            "od280/od315_of_diluted_wines",
        ]
        top = top[: self.interactions + 1]
        for i, a in enumerate(top):
            for b in top[i + 1 :]:
                df[f"{a}*{b}"] = df[a] * df[b]
        self.save(df)


@dagmill.requires(Features)
class Train(dagmill.tasks.TaskPickle):
    """Fit a classifier on a stratified training split; keep the training score."""

    model = dagmill.Parameter(default="logreg", description="logreg or forest")
    seed = dagmill.IntParameter(default=0)
    trees = dagmill.IntParameter(default=200, description="trees of the forest")
    # admitted against its project's quota (make demo's last step shows one waiting)
    resources = {"cpu": 1, "memory": "512Mi"}

    def run(self) -> None:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        df = self.inputLoad()
        x, y = df.drop(columns="target"), df["target"]
        x_train, _, y_train, _ = train_test_split(
            x, y, test_size=0.3, stratify=y, random_state=self.seed
        )
        if self.model == "logreg":
            clf = LogisticRegression(max_iter=2000)
        elif self.model == "forest":
            clf = RandomForestClassifier(n_estimators=self.trees, random_state=self.seed)
        else:
            raise ValueError(f"unknown model {self.model!r}: use logreg or forest")
        print(f"training {self.model} on {len(x_train)} rows, {x_train.shape[1]} features")
        clf.fit(x_train, y_train)
        self.save(clf)
        self.saveMeta({"train_accuracy": float(clf.score(x_train, y_train))})


@dagmill.requires(Train, Features)
class Evaluate(dagmill.tasks.TaskJson):
    """Score the model on the held-out split and write a report."""

    def run(self) -> None:
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.model_selection import train_test_split

        clf, df = self.inputLoad()
        x, y = df.drop(columns="target"), df["target"]
        _, x_test, _, y_test = train_test_split(
            x, y, test_size=0.3, stratify=y, random_state=self.seed
        )
        pred = clf.predict(x_test)
        print(f"{self.model}: accuracy {accuracy_score(y_test, pred):.3f} on {len(y_test)} rows")
        self.save(
            {
                "model": self.model,
                "test_rows": len(y_test),
                "accuracy": round(float(accuracy_score(y_test, pred)), 4),
                "f1_macro": round(float(f1_score(y_test, pred, average="macro")), 4),
            }
        )
