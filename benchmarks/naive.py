"""The baseline: a gist search written the way most implementations do it.

One request at a time with urllib: list every page (following `Link: rel="next"`), then
fetch every file whole, then search each text with the stdlib `re`. Prints one line per
match (`gist_id/filename:line:text`), flushed, so time to first match can be measured.

    python -m benchmarks.naive API_URL USER PATTERN
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request

HEADERS = {
    "User-Agent": "naive-gist-search",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}


def get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=HEADERS)) as resp:
        return resp.read(), resp.headers.get("Link", "")


def next_link(header: str) -> str | None:
    for part in header.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params:
            return url.strip()[1:-1]
    return None


def main(argv: list[str]) -> int:
    api, user, pattern = argv
    url: str | None = f"{api}/users/{user}/gists?per_page=100"
    files = []
    while url:
        body, link = get(url)
        for gist in json.loads(body):
            for entry in gist["files"].values():
                files.append((gist["id"], entry["filename"], entry["raw_url"]))
        url = next_link(link)
    texts = [(gist, name, get(raw)[0].decode("utf-8", "replace")) for gist, name, raw in files]
    regex = re.compile(pattern, re.MULTILINE)
    out = sys.stdout
    found = 0
    for gist, name, text in texts:
        line_number, counted = 1, 0
        for m in regex.finditer(text):
            line_number += text.count("\n", counted, m.start())
            counted = m.start()
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.start())
            out.write(f"{gist}/{name}:{line_number}:{text[start : end if end >= 0 else None]}\n")
            out.flush()
            found += 1
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
