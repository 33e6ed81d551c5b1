#!/bin/bash
main() {
    if [ "$fail" = "true" ]; then
        dx-jobutil-report-error "summarise was asked to fail" AppError
    fi
    dx-download-all-inputs
    mkdir -p out/report
    echo "$reads_name: $(wc -l < "$reads_path") reads, $(sort -u "$reads_path" | wc -l) distinct" \
        > "out/report/${reads_prefix}.report.txt"
    dx-upload-all-outputs
}
