"""Write ``--text_dir`` files from the IEMOCAP release's transcriptions.

    python -m datasets.tools.prepare_iemocap --audio_dir D --text_dir OUT

writes ``OUT/<stem>.json`` = ``{"Utterance": text}`` for every utterance of the 6-class selection
(torchaudio's; the 4-class selection is a subset of it), the files ``--text_dir`` expects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datasets.iemocap import index_iemocap, load_transcripts
from utils.experiment import InputError

PROG = "prepare_iemocap"


def prepare(audio_dir: Path, text_dir: Path) -> int:
    """Write one JSON transcript per selected utterance; return how many were written."""
    utterances = index_iemocap(audio_dir, classes=6)
    texts = load_transcripts(utterances, audio_dir, text_dir=None)
    text_dir.mkdir(parents=True, exist_ok=True)
    for u, text in zip(utterances, texts):
        record = json.dumps({"Utterance": text}, ensure_ascii=False)
        (text_dir / f"{u.stem}.json").write_text(record, encoding="utf-8")
    return len(utterances)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--audio_dir", type=Path, required=True, help="the folder holding IEMOCAP/ (or IEMOCAP/ itself)"
    )
    parser.add_argument("--text_dir", type=Path, required=True, help="output folder for the <stem>.json files")
    args = parser.parse_args(argv)
    try:
        count = prepare(args.audio_dir, args.text_dir)
    except (InputError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} transcripts to {args.text_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
