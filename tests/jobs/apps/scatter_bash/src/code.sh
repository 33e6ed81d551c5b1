#!/bin/bash
main() {
    refs=()
    ids=()
    for i in $(seq 1 "$n"); do
        job=$(dx-jobutil-new-job square -ix="$i")
        ids+=(--depends-on "$job")
        refs+=(-isquares="$job:square")
    done
    gather=$(dx-jobutil-new-job gather "${refs[@]}" "${ids[@]}")
    dx-jobutil-add-output total "$gather:total" --class=jobref
}

square() {
    echo "squaring $x"
    dx-jobutil-add-output square $((x * x))
}

gather() {
    total=0
    for s in "${squares[@]}"; do total=$((total + s)); done
    echo "total is $total"
    dx-jobutil-add-output total "$total"
}
