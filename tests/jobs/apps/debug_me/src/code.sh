#!/bin/bash
main() {
    echo "working in $PWD"
    echo "left behind by the job" > "$HOME/clue.txt"
    case "$mode" in
      fail) echo "about to fail"; exit 3 ;;
      app_error) dx-jobutil-report-error "the input is bad" AppError ;;
      hold_file)
        # A long-running helper that must survive the hold, then the hold itself.
        bash -c "exec -a $marker sleep 600" &
        touch /.dx-hold
        sleep 600 ;;
      succeed) echo "all good" ;;
    esac
}
