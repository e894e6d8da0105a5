#!/usr/bin/env bash
# Issue 31's tables from one frozen install (clean clone of 3d541e6 at /work/ci.bc6q/p), run one after another.
set -u
cd /work/runs/s39
export HASHPLUG_DATA=/work/shared/data
H=/work/ci.bc6q/p/.venv/bin/hashplug
PY=/work/ci.bc6q/p/.venv/bin/python
log() { echo "[$(date +%T)] $*" | tee -a times.log; }
log start search
/usr/bin/time -v $H bench search --sizes 100000 1000000 10000000 --codes dense-64 dense-256 dense-1024 khot-2000-5 khot-4096-16 khot-2000-10 khot-320-16 --peers faiss mih --out search.json --png search_latency.png > search.log 2>&1
log end search rc=$?
log start catch-up
$H bench catch-up --repeats 15 --out catch_up.json > catch_up.log 2>&1
log end catch-up rc=$?
log start threads
$H bench threads --workloads itq-fit pcahash-fit sh-fit itq-encode --repeats 3 --out threads.json > threads.log 2>&1
log end threads rc=$?
log start encode
$H bench encode --models mnist=/tmp/enc31_base/mnist.npz cifar10=/tmp/enc31_base/cifar10.npz --out encode.json > encode.log 2>&1
log end encode rc=$?
log start digests
$PY /work/runs/s39/digests.py > digests.log 2>&1
log end digests rc=$?
