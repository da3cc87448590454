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
