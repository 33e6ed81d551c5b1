#!/bin/bash
main() {
    dx-download-all-inputs
    lines=$(wc -l < "$reads_path")
    mkdir -p out/report
    echo "$reads_name has $lines lines" > "out/report/${reads_prefix}.report.txt"
    dx-upload-all-outputs
    dx-jobutil-add-output lines "$lines"
}
