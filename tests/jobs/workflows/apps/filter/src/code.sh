#!/bin/bash
main() {
    sleep "$pause"
    dx-download-all-inputs
    mkdir -p out/filtered_reads
    grep -v N "$reads_path" > "out/filtered_reads/${reads_prefix}.filtered.txt" || true
    count=$(wc -l < "out/filtered_reads/${reads_prefix}.filtered.txt")
    dx-upload-all-outputs
    dx-jobutil-add-output count "$count"
}
