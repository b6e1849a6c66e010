-- A process group id alone does not name a run's group for long: after a
-- reboot, on another machine with the same short host name, or once pids wrap
-- around, the same number is a stranger's group, and recovery killed it. So a
-- run now records what proves the group is its own (SPEC §17): the machine
-- (/etc/machine-id), the boot (/proc/sys/kernel/random/boot_id) and the group
-- leader's start time (field 22 of /proc/PID/stat, clock ticks since boot).
-- NULL proves nothing: the groups of runs recorded before this are left alone.
ALTER TABLE manage.runs
    ADD COLUMN machine_id   text NULL,
    ADD COLUMN boot_id      text NULL,
    ADD COLUMN leader_start bigint NULL;
