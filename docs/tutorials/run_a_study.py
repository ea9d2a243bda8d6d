"""Plan a study from its file, then read the answer of a finished one."""

import pandas as pd

from repsim.study.report import ANSWER_FILE, COMPARISONS_FILE
from repsim.study.spec import load_study


def main(study_file: str = "studies/quick.toml",
         finished: str = "studies/quick") -> pd.DataFrame:
    # One run per dataset x protocol x fusion layer x seed.
    study = load_study(study_file)
    print(f"study {study.name}: {len(study.runs)} runs, "
          f"e.g. {study.runs[0].key}")

    # The paired comparisons of k = 1 against every other fusion layer.
    comparisons = pd.read_csv(f"{finished}/{COMPARISONS_FILE}")
    audio = comparisons[comparisons["measure"] == "auc_audio"]
    columns = ["dataset", "protocol", "fusion_layer", "difference",
               "verdict"]
    print(audio[columns].to_string(index=False))

    # The answer tables, as the report and the README show them.
    with open(f"{finished}/{ANSWER_FILE}") as answer:
        print(answer.read())
    return audio


if __name__ == "__main__":
    main()
