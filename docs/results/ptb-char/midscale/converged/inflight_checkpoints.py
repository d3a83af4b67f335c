"""Print the checkpoint directories the queued replacements in midscale.db continue from.

After a stop (Ctrl-C on each `zoneout-study run`), each retired trial's replacement waits in
the study with ``requeued_from``; the retired trial's ``resume_points`` name one checkpoint per
seed (finished seeds included: the replacement reads their checkpoint back instead of training
them again). Pack them for the next session:

    tar -czPf converged/inflight-checkpoints.tar.gz \
        $(python3 converged/inflight_checkpoints.py midscale.db)
"""

from __future__ import annotations

import json
import sqlite3
import sys


def inflight_checkpoints(database: str) -> list[str]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        waiting = connection.execute(
            "SELECT s.study_name, t.number, a.value_json FROM trials t"
            " JOIN studies s ON s.study_id = t.study_id"
            " JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'requeued_from'"
            " WHERE t.state = 'WAITING'"
        ).fetchall()
        directories = []
        for study, number, replaced in waiting:
            row = connection.execute(
                "SELECT a.value_json FROM trials t JOIN studies s ON s.study_id = t.study_id"
                " JOIN trial_user_attributes a"
                " ON a.trial_id = t.trial_id AND a.key = 'resume_points'"
                " WHERE s.study_name = ? AND t.number = ?",
                (study, json.loads(replaced)),
            ).fetchone()
            for point in json.loads(row[0]) if row else []:
                if point:
                    print(
                        f"# {study}: trial {number} continues seed {point['seed']} "
                        f"after epoch {point['epoch']}",
                        file=sys.stderr,
                    )
                    directories.append(point["checkpoint"])
        return directories
    finally:
        connection.close()


if __name__ == "__main__":
    print(" ".join(inflight_checkpoints(sys.argv[1] if len(sys.argv) > 1 else "midscale.db")))
