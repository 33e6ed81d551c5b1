#!/bin/bash
main() {
    for i in $(seq 1 "$n"); do echo "count $i"; done
    echo "to stderr" >&2
    hello-tool
    echo "a line through dx-log-stream" | dx-log-stream -l info
    dx-jobutil-add-output greeting "hello $who"
}
