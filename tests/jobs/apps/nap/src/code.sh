#!/bin/bash
main() {
    echo "$tag is going to sleep"
    # The seconds double as a marker: tests find this process by "sleep <seconds>".
    sleep "$seconds"
    echo "$tag woke up"
}
