#!/bin/bash
main() {
    dx-jobutil-add-output greeting "$(cat /opt/greeter/greeting.txt), $who"
    dx-jobutil-add-output resources "$DX_RESOURCES_ID"
}
