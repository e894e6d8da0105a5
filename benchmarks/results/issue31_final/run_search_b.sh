#!/usr/bin/env bash
cd /work/runs/s39
export HASHPLUG_DATA=/work/shared/data
echo "[$(date +%T)] start search_b" >> times.log
/work/ci.bc6q/p/.venv/bin/hashplug bench search --sizes 100000 1000000 --codes dense-64 dense-256 dense-1024 khot-2000-5 khot-4096-16 khot-2000-10 khot-320-16 --peers faiss mih --out search_b.json --png search_b_latency.png > search_b.log 2>&1
echo "[$(date +%T)] end search_b rc=$?" >> times.log
