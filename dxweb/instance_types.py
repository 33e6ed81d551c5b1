"""DNAnexus's AWS instance types: the cores and memory each gives a job, the default of
settings.DXWEB_INSTANCE_TYPES.

Memory is what DNAnexus documents for the type, in GB, written here as MB (GB x 1000, as the
platform's own `totalMemoryMB` counts: mem1_ssd1_x2 is 3.8 GB there and 3766 MB). A worker gives a
job no more than it has itself: the sandbox caps both to the host (jobs/execution/sandbox/spec.py).
No entry names a disk: every type gets settings.DXWEB_DEFAULT_DISK_MB.
"""

# name: (cores, memory in GB), family by family.
_DOCUMENTED = {
    # Compute-optimised (c3, c5d).
    "mem1_ssd1_x2": (2, 3.8),
    "mem1_ssd1_x4": (4, 7.5),
    "mem1_ssd1_x8": (8, 15),
    "mem1_ssd1_x16": (16, 30),
    "mem1_ssd1_x32": (32, 60),
    "mem1_ssd1_x36": (36, 72),
    "mem1_ssd1_v2_x2": (2, 3.8),
    "mem1_ssd1_v2_x4": (4, 7.6),
    "mem1_ssd1_v2_x8": (8, 15.6),
    "mem1_ssd1_v2_x16": (16, 32),
    "mem1_ssd1_v2_x36": (36, 72),
    "mem1_ssd1_v2_x72": (72, 144),
    # Compute-optimised, larger local disk.
    "mem1_ssd2_x2": (2, 3.8),
    "mem1_ssd2_x4": (4, 7.5),
    "mem1_ssd2_x8": (8, 15),
    "mem1_ssd2_x16": (16, 30),
    "mem1_ssd2_x36": (36, 60),
    "mem1_ssd2_v2_x2": (2, 3.8),
    "mem1_ssd2_v2_x4": (4, 7.6),
    "mem1_ssd2_v2_x8": (8, 15.6),
    "mem1_ssd2_v2_x16": (16, 32),
    "mem1_ssd2_v2_x36": (36, 72),
    "mem1_ssd2_v2_x72": (72, 144),
    # Compute-optimised, hard disks.
    "mem1_hdd2_x8": (8, 7),
    "mem1_hdd2_x32": (32, 60.5),
    # General purpose (m3, m5d).
    "mem2_ssd1_x2": (2, 7.5),
    "mem2_ssd1_x4": (4, 15),
    "mem2_ssd1_x8": (8, 30),
    "mem2_ssd1_v2_x2": (2, 8),
    "mem2_ssd1_v2_x4": (4, 16),
    "mem2_ssd1_v2_x8": (8, 32),
    "mem2_ssd1_v2_x16": (16, 64),
    "mem2_ssd1_v2_x32": (32, 128),
    "mem2_ssd1_v2_x48": (48, 192),
    "mem2_ssd1_v2_x64": (64, 256),
    "mem2_ssd1_v2_x96": (96, 384),
    # General purpose, hard disks.
    "mem2_hdd2_x1": (1, 3.8),
    "mem2_hdd2_x2": (2, 7.5),
    "mem2_hdd2_x4": (4, 15),
    # Memory-optimised (r3, r5d).
    "mem3_ssd1_x2": (2, 15),
    "mem3_ssd1_x4": (4, 30.5),
    "mem3_ssd1_x8": (8, 61),
    "mem3_ssd1_x16": (16, 122),
    "mem3_ssd1_x32": (32, 244),
    "mem3_ssd1_v2_x2": (2, 16),
    "mem3_ssd1_v2_x4": (4, 32),
    "mem3_ssd1_v2_x8": (8, 64),
    "mem3_ssd1_v2_x16": (16, 128),
    "mem3_ssd1_v2_x32": (32, 256),
    "mem3_ssd1_v2_x48": (48, 384),
    "mem3_ssd1_v2_x64": (64, 512),
    "mem3_ssd1_v2_x96": (96, 768),
    # Memory-optimised, hard disks.
    "mem3_hdd2_x2": (2, 17.1),
    "mem3_hdd2_x4": (4, 34.2),
    "mem3_hdd2_x8": (8, 68.4),
}

# name -> {"cpus", "memory_mb"}, the shape of settings.DXWEB_INSTANCE_TYPES.
INSTANCE_TYPES = {name: {"cpus": cores, "memory_mb": round(gb * 1000)} for name, (cores, gb) in _DOCUMENTED.items()}
