#!/bin/sh
# porthole demo: a quick run that finishes cleanly in about 5 seconds.
echo "preparing"
for i in 1 2 3 4 5; do
    sleep 1
    echo "step $i of 5"
done
echo "done"
