#!/bin/bash
main() {
    case "$mode" in
    app_error)
        dx-jobutil-report-error "the input was not acceptable" AppError ;;
    exit)
        echo "about to fail"
        false ;;
    sleep)
        echo "sleeping"
        sleep 600 ;;
    daemons)
        # A tree that tries to outlive the job: a background child, a nohup, and a new session.
        sleep "$marker" &
        nohup sleep "$marker" > /dev/null 2>&1 &
        setsid sleep "$marker" &
        echo "daemons started"
        wait ;;
    flood)
        line=$(head -c 60000 /dev/zero | tr '\0' 'x')
        for i in $(seq 1 120); do echo "$i $line"; done
        echo "still running after the flood" ;;
    sandbox)
        echo "pid 1: $(tr '\0' ' ' < /proc/1/cmdline)" ;;
    escape)
        # What an attacker's job tries first. Kernel settings are written back with their own value.
        v=$(cat /proc/sys/kernel/core_pattern)
        if printf '%s\n' "$v" > /proc/sys/kernel/core_pattern 2>/dev/null; then echo "SYSCTL WRITTEN"; else echo "sysctl refused"; fi
        if unshare --user --map-root-user true 2>/dev/null; then echo "USER NAMESPACE"; else echo "userns refused"; fi
        if ls /var/log > /dev/null 2>&1; then echo "HOST LOGS"; else echo "no host logs"; fi
        if [ -e "$other/manage.py" ]; then echo "HOST TREE"; else echo "no host tree"; fi
        if [ -e /etc/shadow ]; then echo "SHADOW"; else echo "no shadow"; fi ;;
    cache)
        # The execDepends cache: what this job finds there, then its own mark.
        if [ -e /opt/dnanexus/pip-cache/mark ]; then echo "cache holds $(cat /opt/dnanexus/pip-cache/mark)"; else echo "cache empty"; fi
        echo "$marker" > /opt/dnanexus/pip-cache/mark ;;
    fill)
        # 10 MiB files in the home and in /var/tmp, far past any small disk limit.
        for i in $(seq 1 400); do head -c 10485760 /dev/zero > "f$i"; head -c 10485760 /dev/zero > "/var/tmp/f$i"; done
        echo "filled without being stopped" ;;
    snoop)
        if dx ls "$other:/" > /dev/null 2>&1; then echo "LEAKED"; else echo "REFUSED"; fi
        if dx describe "$other" > /dev/null 2>&1; then echo "LEAKED"; else echo "REFUSED"; fi
        dx ls "$DX_PROJECT_CONTEXT_ID:/" > /dev/null && echo "project context readable"
        echo "a file of the job" > mine.txt
        if dx upload mine.txt --path "$DX_PROJECT_CONTEXT_ID:/x" --brief 2>/dev/null; then echo "WROTE"; else echo "CANNOT WRITE CONTEXT"; fi ;;
    esac
}
