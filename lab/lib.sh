# Shared by the lab's groups (lab/groups/*.sh source it as /lab/lib.sh).

# limited CMD...: run CMD (a kickvm boot) under the lab's per-boot limit:
# SIGTERM after LAB_BOOT_TIMEOUT seconds (lab/init sets it), on which kickvm
# stops the guest and prints each vCPU's state and its --stats; SIGKILL 10 s
# later if it is still there.
limited() {
	timeout -s TERM -k 10 "${LAB_BOOT_TIMEOUT:-180}" "$@"
}

# status_words RC: what a kickvm exit status under limited() means.
status_words() {
	case $1 in
	143) echo "hit the ${LAB_BOOT_TIMEOUT:-180}s limit and was stopped by SIGTERM (kickvm's vCPU state is above)";;
	137) echo "hit the ${LAB_BOOT_TIMEOUT:-180}s limit and was killed (it did not stop on SIGTERM)";;
	*) echo "exited $1";;
	esac
}

# name_functions LOG: the kernel functions among the rip= and stack words of
# the vCPU states kickvm printed in LOG (a nested guest booted with nokaslr,
# looked up in this kernel's /proc/kallsyms: the same kernel, also nokaslr).
name_functions() {
	grep -q "rip=ffffffff" "$1" || return 0
	echo "lab: kernel functions in the vCPU states above:"
	{
		tr -d '\r' < "$1" | awk '
			/^vCPU [0-9]+:/ { cpu = $2; sub(/:/, "", cpu) }
			/rip=ffffffff/ { s = $0; sub(/.*rip=/, "", s); sub(/ .*/, "", s); print s, "~", "cpu" cpu, "rip" }
			/^    [0-9a-f]+ / { for (i = 1; i <= NF; i++) if ($i ~ /^ffffffff8/) print $i, "~", "cpu" cpu, "stack" }'
		cat /proc/kallsyms
	} | sort | awk '$2 == "~" { print "  " $3, $4, $1, sym; next } { sym = $3 }' | sort -s -k1,1
}
