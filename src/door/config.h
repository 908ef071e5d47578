/* SPDX-License-Identifier: MIT */
/*
 * The door's device configuration: a small line-based format (see
 * docs/door-config.md).  One device per line:
 *
 *     KIND BDF [key=value]...      # comment
 *
 * The parser is pure (no I/O, no global state) so that the fuzzer and
 * `p2pbuf exec` can run it before anything is created.
 */
#ifndef P2PBUF_DOOR_CONFIG_H
#define P2PBUF_DOOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define DOOR_MAX_DEVICES 64
#define DOOR_MAX_GROUP 65535u

enum door_kind {
	DOOR_GPU,	  /* a function with the BARs the line gives (GPU-like by default) */
	DOOR_COPY_ENGINE, /* p2p_copy_engine_create() */
	DOOR_STORAGE,	  /* p2p_storage_create() */
};

/* BAR flags, as enum p2p_pci_bar_desc (include/p2pbuf/vfio.h) */
#define DOOR_BAR_MEM64 0x1u
#define DOOR_BAR_PREFETCH 0x2u
#define DOOR_BAR_IO 0x4u

/* Function flags, as P2P_PCI_* */
#define DOOR_FN_VF 0x1u
#define DOOR_FN_NO_FLR 0x2u
#define DOOR_FN_NO_DMABUF 0x4u
#define DOOR_FN_HUGE 0x8u
#define DOOR_FN_PREFAULT 0x10u

struct door_dev {
	enum door_kind kind;
	char bdf[13];		/* canonical "dddd:bb:dd.f" */
	unsigned int group;
	uint16_t vendor, device;
	uint32_t class_code;
	uint32_t fn_flags;	/* DOOR_FN_* */
	uint64_t bar_size[6];
	uint32_t bar_flags[6];	/* DOOR_BAR_* */
	char *file;		/* storage: the image, or NULL for a temporary one */
	uint64_t size;		/* storage: size of the temporary image */
	char source[64];	/* "FILE:LINE", for messages */
};

struct door_config {
	struct door_dev devs[DOOR_MAX_DEVICES];
	unsigned int n;
};

/* The embedded default: the `p2pbuf run` set. */
extern const char door_default_config[];

/**
 * door_config_parse() - parse @len bytes of @text and append its devices
 * @cfg: the configuration (zero it before the first call)
 * @text: the lines; need not be NUL-terminated; a NUL byte is an error
 * @name: the source's name for messages ("door.conf", "--device")
 * @first_line: the number of @text's first line (1 for a file)
 * @err: on failure, one line "NAME:LINE: problem" (no newline)
 *
 * Checks everything p2p_pci_dev_create() would refuse (BAR sizes and
 * slots), duplicate BDFs and the device limit.  On failure @cfg keeps the
 * devices of earlier calls and nothing of this one.
 *
 * Return: 0 or -EINVAL (bad line, @err set), -ENOMEM.
 */
int door_config_parse(struct door_config *cfg, const char *text, size_t len, const char *name,
		      unsigned int first_line, char *err, size_t errlen);

/** door_config_free() - free what the parser allocated; @cfg is empty afterwards */
void door_config_free(struct door_config *cfg);

/**
 * door_config_load() - the configuration the environment asks for
 *
 * door_config_read() with $P2PBUF_DOOR_CONFIG and $P2PBUF_DOOR_DEVICES,
 * which `p2pbuf exec` sets; with $P2PBUF_DOOR_CONNECT set (--connect) and
 * no file, no default set: the --device lines only.
 *
 * Return: 0 or -errno with @err set.
 */
int door_config_load(struct door_config *cfg, char *err, size_t errlen);

/**
 * door_config_read() - read a configuration file and extra lines
 * @path: the file (NULL or "" for the embedded default)
 * @extra: more lines, one device a line (the --device specs), or NULL
 *
 * Reads the file with read(2) (inside the door, libp2pbuf's own calls do
 * not come back into the wrappers).  On failure @cfg is empty.
 *
 * Return: 0 or -errno with @err set ("FILE: problem" or "NAME:LINE: problem").
 */
int door_config_read(struct door_config *cfg, const char *path, const char *extra, char *err,
		     size_t errlen);

/** door_kind_name() - "gpu", "copy-engine", "storage" */
const char *door_kind_name(enum door_kind kind);

#endif
