// SPDX-License-Identifier: GPL-2.0
/*
 * tphctl: drive the VFIO dma-buf TPH uAPI and the test importer.
 *
 * File descriptors live as long as the process, so one invocation runs a
 * whole sequence of steps: open the exporter through VFIO (no-IOMMU), get
 * a dma-buf of its BAR, set TPH on it, attach the importer, DMA, detach.
 * Each step prints one JSON object on its own line; the exit status is 0
 * when every step succeeded, else the errno of the first failing step
 * (with -k, every step still runs).
 *
 * Slots: the dma-buf of get, set, set-raw "dmabuf", close-dmabuf and race,
 * and the importer file of attach, dma, dma-start, detach and status, are
 * those of the current slot (0 at the start). Each slot opens an importer
 * file of its own, so each slot's attachment is its own: of the importer
 * TPHLAB_IMPORTER names (a BDF: /dev/tph-importer-BDF), else of the one
 * tph_importer device bound (/dev/tph-importer).
 *
 * Steps (`tphctl --help` prints this list: keep usage[] below the same):
 *   open BDF|ROLE                VFIO device of the exporter (no-IOMMU group,
 *                                type1 container or iommufd: TPHLAB_VFIO or
 *                                /etc/tphlab/vfio, else auto);
 *                                a ROLE (exporter, spare) or QOM id is looked
 *                                up in /etc/tphlab/devices
 *   slot N                       make slot N (0..3) the current one
 *   get [REGION]                 VFIO_DEVICE_FEATURE_DMA_BUF of a whole BAR (2)
 *   other BDF|ROLE               open another vfio-pci device and get a dma-buf
 *                                of its BAR2 (fd "other" for set-raw)
 *   probe                        DMA_BUF_TPH PROBE
 *   set FLAGS ST ST_EXT PH       DMA_BUF_TPH SET on the current dma-buf
 *   set-raw FD FLAGS ST ST_EXT PH ARGSZ_DELTA
 *                                SET with any fd ("dmabuf", "other",
 *                                "closed", "eventfd" or a number) and argsz
 *                                changed by ARGSZ_DELTA bytes
 *   tph-get                      GET on the TPH feature (not supported)
 *   attach [FD]                  importer ATTACH (FD as for set-raw)
 *   dma OFFSET LEN PATTERN       importer DMA; OFFSET "end" or "end-N" counts
 *                                from the end of the attached dma-buf
 *   read OFFSET LEN              importer DMA that reads the dma-buf, hinted
 *                                the same way
 *   copy SLOT SRC_OFFSET OFFSET LEN
 *                                importer COPY: the device reads LEN bytes of
 *                                slot SLOT's dma-buf at SRC_OFFSET and writes
 *                                them into the current slot's at OFFSET
 *   dma-start OFFSET LEN PATTERN COUNT
 *                                a long DMA: one importer DMA ioctl of COUNT
 *                                DMAs, in a thread; the steps after it run
 *                                meanwhile
 *   read-start OFFSET LEN COUNT  dma-start of reads (TPH_IMPORTER_DMA_READ)
 *   dma-stale LEN PATTERN        importer DMA_STALE (a fault): LEN bytes at the
 *                                address of the last DMA, after detach
 *   dma-wait                     wait for the dma-start thread; prints the
 *                                DMA's result and how long the ioctl took
 *   detach                       importer DETACH
 *   status                       importer STATUS
 *   cpu-st CPU MEM               importer CPU_ST: the Steering Tag firmware
 *                                reports for CPU, MEM 0 volatile, 1 persistent
 *   cpu-st-use CPU MEM PH        CPU_ST with USE: the attachment DMAs with
 *                                that CPU's tag and PH from its next mapping
 *   decode on|off                exporter memory decode (PCI command bit 1);
 *                                prints how long the config write took (a
 *                                revocation waits for the importer)
 *   reset                        VFIO_DEVICE_RESET of the exporter
 *   poke OFFSET VALUE            CPU write of a 32-bit VALUE into the exporter's
 *                                BAR2 through VFIO (a write with no hint)
 *   close-device                 close the exporter's VFIO device fd
 *   close-dmabuf                 close the dma-buf fd
 *   race THREADS QUERIES         THREADS threads SET values in a loop while the
 *                                importer attaches, reads its TPH query result
 *                                and detaches QUERIES times; prints every result
 *                                (see race_value() for what thread t writes)
 *   fuzz SEED OPS THREADS        THREADS threads run OPS random operations of
 *                                the uAPI and the importer on shared fds (see
 *                                step_fuzz()); prints counts and every SET
 *                                that succeeded
 *   sleep MS
 *
 * The exporter's hint log survives the reset vfio-pci does when tphctl
 * releases the device: read it over QMP after tphctl exits.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <misc/tph_importer.h>

#define IMPORTER_DEV "/dev/tph-importer"
/* ROLE BDF QOMID lines (the rig writes it; TPHLAB_DEVICES overrides) */
#define DEVICES_FILE "/etc/tphlab/devices"

/* What tphctl -h prints: the steps, their arguments and an example */
static const char usage[] =
	"usage: tphctl [-k] STEP [ARGS] ...\n"
	"       tphctl -h|--help\n"
	"\n"
	"Runs the steps in order in one process (file descriptors live as long as\n"
	"it does); each prints one JSON object on a line of its own. Exit status 0\n"
	"when every step succeeded, else the errno of the first failing one; -k\n"
	"runs every step even so. A ROLE is a line of /etc/tphlab/devices (ROLE BDF\n"
	"QOMID, written by the rig when it binds the devices; TPHLAB_DEVICES names\n"
	"another file): exit status 2 if that file is missing, 19 if it lacks ROLE.\n"
	"The importer is the one TPHLAB_IMPORTER names by BDF, else the only one.\n"
	"\n"
	"Steps:\n"
	"  open BDF|ROLE                VFIO device of the exporter (no-IOMMU group,\n"
	"                               type1 container or iommufd: TPHLAB_VFIO or\n"
	"                               /etc/tphlab/vfio, else auto);\n"
	"                               a ROLE (exporter, spare) or QOM id is looked\n"
	"                               up in /etc/tphlab/devices\n"
	"  slot N                       make slot N (0..3) the current one\n"
	"  get [REGION]                 VFIO_DEVICE_FEATURE_DMA_BUF of a whole BAR (2)\n"
	"  other BDF|ROLE               open another vfio-pci device and get a dma-buf\n"
	"                               of its BAR2 (fd \"other\" for set-raw)\n"
	"  probe                        DMA_BUF_TPH PROBE\n"
	"  set FLAGS ST ST_EXT PH       DMA_BUF_TPH SET on the current dma-buf\n"
	"  set-raw FD FLAGS ST ST_EXT PH ARGSZ_DELTA\n"
	"                               SET with any fd (\"dmabuf\", \"other\",\n"
	"                               \"closed\", \"eventfd\" or a number) and argsz\n"
	"                               changed by ARGSZ_DELTA bytes\n"
	"  tph-get                      GET on the TPH feature (not supported)\n"
	"  attach [FD]                  importer ATTACH (FD as for set-raw)\n"
	"  dma OFFSET LEN PATTERN       importer DMA; OFFSET \"end\" or \"end-N\" counts\n"
	"                               from the end of the attached dma-buf\n"
	"  read OFFSET LEN              importer DMA that reads the dma-buf, hinted\n"
	"                               the same way\n"
	"  copy SLOT SRC_OFFSET OFFSET LEN\n"
	"                               importer COPY: the device reads LEN bytes of\n"
	"                               slot SLOT's dma-buf at SRC_OFFSET and writes\n"
	"                               them into the current slot's at OFFSET\n"
	"  dma-start OFFSET LEN PATTERN COUNT\n"
	"                               a long DMA: one importer DMA ioctl of COUNT\n"
	"                               DMAs, in a thread; the steps after it run\n"
	"                               meanwhile\n"
	"  read-start OFFSET LEN COUNT  dma-start of reads (TPH_IMPORTER_DMA_READ)\n"
	"  dma-stale LEN PATTERN        importer DMA_STALE (a fault): LEN bytes at the\n"
	"                               address of the last DMA, after detach\n"
	"  dma-wait                     wait for the dma-start thread; prints the\n"
	"                               DMA's result and how long the ioctl took\n"
	"  detach                       importer DETACH\n"
	"  status                       importer STATUS\n"
	"  cpu-st CPU MEM               importer CPU_ST: the Steering Tag firmware\n"
	"                               reports for CPU, MEM 0 volatile, 1 persistent\n"
	"  cpu-st-use CPU MEM PH        CPU_ST with USE: the attachment DMAs with\n"
	"                               that CPU's tag and PH from its next mapping\n"
	"  decode on|off                exporter memory decode (PCI command bit 1);\n"
	"                               prints how long the config write took (a\n"
	"                               revocation waits for the importer)\n"
	"  reset                        VFIO_DEVICE_RESET of the exporter\n"
	"  poke OFFSET VALUE            CPU write of a 32-bit VALUE into the exporter's\n"
	"                               BAR2 through VFIO (a write with no hint)\n"
	"  close-device                 close the exporter's VFIO device fd\n"
	"  close-dmabuf                 close the dma-buf fd\n"
	"  race THREADS QUERIES         THREADS threads SET values in a loop while the\n"
	"                               importer attaches, reads its TPH query result\n"
	"                               and detaches QUERIES times; prints every result\n"
	"                               (see race_value() for what thread t writes)\n"
	"  fuzz SEED OPS THREADS        THREADS threads run OPS random operations of\n"
	"                               the uAPI and the importer on shared fds (see\n"
	"                               step_fuzz()); prints counts and every SET\n"
	"                               that succeeded\n"
	"  sleep MS\n"
	"\n"
	"The exporter's hint log survives the reset vfio-pci does when tphctl\n"
	"releases the device: read it with `rig hints` after tphctl exits.\n"
	"\n"
	"Example: a hinted DMA from the importer into the exporter's BAR2 (rig hints\n"
	"then shows one record: TH=1 PH=1 ST=0xbeef ext, 128 bytes, from the importer):\n"
	"  tphctl open exporter get set 2 0 0xbeef 1 attach dma 0 128 0x11223344 detach\n";

struct vdev {
	int container, group, device, dmabuf;
};

/* The exporter's dma-buf and the importer file of one slot */
struct slot {
	int dmabuf, importer;
	unsigned long long attached_size;
};

#define NR_SLOTS 4

static struct vdev xp = { -1, -1, -1, -1 }, other = { -1, -1, -1, -1 };
static struct slot slots[NR_SLOTS] = {
	{ -1, -1, 0 }, { -1, -1, 0 }, { -1, -1, 0 }, { -1, -1, 0 } };
static struct slot *cur = &slots[0];

/* The dma-start thread */
static struct {
	pthread_t thread;
	int running, fd, r;
	long ms;
	struct tph_importer_dma d;
} bg;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void emit(const char *step, int ret, int err, const char *fmt, ...)
{
	va_list ap;

	printf("{\"step\": \"%s\", \"ret\": %d, \"errno\": %d, \"error\": \"%s\"",
	       step, ret, err, err ? strerror(err) : "");
	if (fmt && *fmt) {
		printf(", ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("}\n");
	fflush(stdout);
}

static long num(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || *end) {
		fprintf(stderr, "tphctl: not a number: %s\n", s);
		exit(EINVAL);
	}
	return v;
}

/* "dmabuf", "closed", "eventfd", or a number */
static int pick_fd(const char *s)
{
	int fd;

	if (!strcmp(s, "dmabuf"))
		return cur->dmabuf;
	if (!strcmp(s, "other"))
		return other.dmabuf;
	if (!strcmp(s, "eventfd"))
		return eventfd(0, EFD_CLOEXEC);
	if (!strcmp(s, "closed")) {
		fd = open("/dev/null", O_RDONLY);
		close(fd);
		return fd;
	}
	return (int)num(s);
}

/*
 * A BDF as given (it has a ':'), else the BDF of the line of DEVICES_FILE
 * whose role or QOM id is `name`. A missing file or name ends tphctl with
 * ENOENT or ENODEV, saying which.
 */
static const char *bdf_of(const char *name)
{
	const char *path = getenv("TPHLAB_DEVICES");
	char line[256], role[64], bdf[64], qom[64], known[256] = "";
	FILE *f;

	if (strchr(name, ':'))
		return name;
	if (!path || !*path)
		path = DEVICES_FILE;
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "tphctl: %s is no PCI address, and %s, which names the "
			"devices by role, cannot be read (%s): give a BDF, or bind the "
			"devices with the rig (rig boot)\n", name, path, strerror(errno));
		exit(ENOENT);
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %63s %63s", role, bdf, qom) != 3 || role[0] == '#')
			continue;
		if (!strcmp(role, name) || !strcmp(qom, name)) {
			fclose(f);
			return strdup(bdf);
		}
		if (strlen(known) + strlen(role) + 2 < sizeof(known))
			strcat(strcat(known, " "), role);
	}
	fclose(f);
	fprintf(stderr, "tphctl: no device \"%s\" in %s (it names:%s)\n", name, path,
		*known ? known : " none");
	exit(ENODEV);
}

/*
 * How tphctl opens a vfio-pci device: TPHLAB_VFIO, else the first word of
 * VFIO_PATH_FILE (the rig writes it for the topology), else "auto": the
 * no-IOMMU group if the device has one, else iommufd if the kernel gives
 * the device a cdev, else a type1 container.
 */
#define VFIO_PATH_FILE "/etc/tphlab/vfio"

static const char *vfio_path_wanted(void)
{
	static char word[32];
	const char *env = getenv("TPHLAB_VFIO");
	FILE *f;

	if (env && *env)
		return env;
	f = fopen(VFIO_PATH_FILE, "r");
	if (f) {
		int n = fscanf(f, "%31s", word);

		fclose(f);
		if (n == 1)
			return word;
	}
	return "auto";
}

/* The device's IOMMU group number, in a static buffer; NULL if none */
static const char *iommu_group_of(const char *bdf)
{
	static char link[PATH_MAX];
	char path[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return NULL;
	link[n] = 0;
	return strrchr(link, '/') + 1;
}

/* A group (no-IOMMU or not) in a container with the given IOMMU model */
static int open_group(struct vdev *v, const char *bdf, const char *node,
		      unsigned long model)
{
	v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (v->container < 0)
		return -errno;
	v->group = open(node, O_RDWR | O_CLOEXEC);
	if (v->group < 0)
		return -errno;
	/* A group that is not viable (a device of it bound elsewhere): EBUSY */
	if (ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container))
		return -errno;
	if (ioctl(v->container, VFIO_SET_IOMMU, model))
		return -errno;
	v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	return v->device < 0 ? -errno : 0;
}

/* iommufd: the device's cdev bound to /dev/iommu, attached to a new IOAS */
static int open_iommufd(struct vdev *v, const char *bdf)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	char path[PATH_MAX], node[PATH_MAX] = "";
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "vfio", 4))
			snprintf(node, sizeof(node), "/dev/vfio/devices/%s", e->d_name);
	closedir(d);
	if (!*node)
		return -ENODEV;
	v->container = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (v->container < 0)
		return -errno;
	v->device = open(node, O_RDWR | O_CLOEXEC);
	if (v->device < 0)
		return -errno;
	bind.iommufd = v->container;
	if (ioctl(v->device, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return -errno;
	if (ioctl(v->container, IOMMU_IOAS_ALLOC, &alloc))
		return -errno;
	attach.pt_id = alloc.out_ioas_id;
	return ioctl(v->device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) ? -errno : 0;
}

/* Open @bdf through VFIO; *@how says which way ("noiommu", "type1", "iommufd") */
static int step_open(struct vdev *v, const char *bdf, const char **how)
{
	const char *want = vfio_path_wanted();
	const char *group = iommu_group_of(bdf);
	char node[PATH_MAX];

	*how = want;
	if (!group)
		return -ENODEV;	/* not bound to vfio-pci, or no such device */
	snprintf(node, sizeof(node), "/dev/vfio/noiommu-%s", group);
	if (!strcmp(want, "auto")) {
		*how = !access(node, F_OK) ? "noiommu" :
		       !access("/dev/iommu", F_OK) ? "iommufd" : "type1";
	}
	if (!strcmp(*how, "noiommu"))
		return open_group(v, bdf, node, VFIO_NOIOMMU_IOMMU);
	if (!strcmp(*how, "type1")) {
		snprintf(node, sizeof(node), "/dev/vfio/%s", group);
		return open_group(v, bdf, node, VFIO_TYPE1v2_IOMMU);
	}
	if (!strcmp(*how, "iommufd"))
		return open_iommufd(v, bdf);
	fprintf(stderr, "tphctl: TPHLAB_VFIO (or %s) is \"%s\": use noiommu, type1, "
		"iommufd or auto\n", VFIO_PATH_FILE, want);
	return -EINVAL;
}

/* A dma-buf of [offset, offset + length) of a region: its fd, or -errno */
static int dmabuf_get(struct vdev *v, unsigned int region, unsigned long long offset,
		      unsigned long long length)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r;
	} req;
	int fd;

	memset(&req, 0, sizeof(req));
	req.f.argsz = sizeof(req);
	req.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req.d.region_index = region;
	req.d.open_flags = O_RDWR | O_CLOEXEC;
	req.d.nr_ranges = 1;
	req.r.offset = offset;
	req.r.length = length;
	fd = ioctl(v->device, VFIO_DEVICE_FEATURE, &req);
	return fd < 0 ? -errno : fd;
}

static int step_get(struct vdev *v, unsigned int region, unsigned long long *size,
		    int *dmabuf)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = region };
	int fd;

	if (ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return -errno;
	fd = dmabuf_get(v, region, 0, ri.size);
	if (fd < 0)
		return fd;
	*dmabuf = fd;
	*size = ri.size;
	return 0;
}

static int tph_feature(unsigned int op, int fd, unsigned int flags, unsigned int st,
		       unsigned int st_ext, unsigned int ph, int argsz_delta)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf_tph t;
	} req;

	memset(&req, 0, sizeof(req));
	req.f.argsz = (int)sizeof(req) + argsz_delta;
	req.f.flags = op | VFIO_DEVICE_FEATURE_DMA_BUF_TPH;
	req.t.dmabuf_fd = fd;
	req.t.flags = flags;
	req.t.steering_tag = (__u8)st;
	req.t.steering_tag_ext = (__u16)st_ext;
	req.t.ph = (__u8)ph;
	if (op == VFIO_DEVICE_FEATURE_PROBE)
		req.f.flags |= VFIO_DEVICE_FEATURE_SET;
	return ioctl(xp.device, VFIO_DEVICE_FEATURE, &req) ? -errno : 0;
}

/* A new file of the importer TPHLAB_IMPORTER names, else of the only one */
static int open_importer(void)
{
	const char *bdf = getenv("TPHLAB_IMPORTER");
	char path[PATH_MAX];

	if (bdf && *bdf)
		snprintf(path, sizeof(path), "%s-%s", IMPORTER_DEV, bdf);
	else
		snprintf(path, sizeof(path), "%s", IMPORTER_DEV);
	return open(path, O_RDWR | O_CLOEXEC);
}

static int importer(void)
{
	if (cur->importer >= 0)
		return 0;
	cur->importer = open_importer();
	return cur->importer < 0 ? -errno : 0;
}

static void *dma_thread(void *arg)
{
	long t0 = now_ms();

	(void)arg;
	bg.r = ioctl(bg.fd, TPH_IMPORTER_DMA, &bg.d) ? -errno : 0;
	bg.ms = now_ms() - t0;
	return NULL;
}

static int config_command(int on)
{
	struct vfio_region_info ri = {
		.argsz = sizeof(ri), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t cmd;

	if (ioctl(xp.device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return -errno;
	if (pread(xp.device, &cmd, 2, ri.offset + PCI_COMMAND) != 2)
		return -errno;
	cmd = on ? cmd | PCI_COMMAND_MEMORY : cmd & ~PCI_COMMAND_MEMORY;
	if (pwrite(xp.device, &cmd, 2, ri.offset + PCI_COMMAND) != 2)
		return -errno;
	return 0;
}

static int bar2_poke(unsigned long long off, uint32_t val)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_BAR2_REGION_INDEX };

	if (ioctl(xp.device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return -errno;
	if (pwrite(xp.device, &val, 4, ri.offset + off) != 4)
		return -errno;
	return 0;
}

/*
 * What race thread t writes at its k-th SET: every field derives from (t, k),
 * so a query result that mixes two SETs matches no (t, k). Every 8th SET
 * leaves out the extended tag (k % 8 == 7) or the 8-bit one (k % 8 == 3).
 */
static void race_value(unsigned int t, unsigned int k, unsigned int *flags,
		       unsigned int *st, unsigned int *st_ext, unsigned int *ph)
{
	*flags = VFIO_DMA_BUF_TPH_ST | VFIO_DMA_BUF_TPH_ST_EXT;
	if (k % 8 == 7)
		*flags = VFIO_DMA_BUF_TPH_ST;
	if (k % 8 == 3)
		*flags = VFIO_DMA_BUF_TPH_ST_EXT;
	*st = (t << 6 | (k & 0x3f)) & 0xff;
	*st_ext = t << 12 | (k & 0xfff);
	*ph = (t + k) & 3;
}

struct race_writer {
	pthread_t thread;
	unsigned int t, sets;
	int err;
};

static volatile int race_stop;

static void *race_write(void *arg)
{
	struct race_writer *w = arg;
	unsigned int k, flags, st, st_ext, ph;
	int r;

	for (k = 0; !race_stop; k++) {
		race_value(w->t, k, &flags, &st, &st_ext, &ph);
		r = tph_feature(VFIO_DEVICE_FEATURE_SET, cur->dmabuf, flags, st, st_ext, ph, 0);
		if (r && !w->err)
			w->err = -r;
		w->sets++;
	}
	return NULL;
}

static int step_race(unsigned int threads, unsigned int queries)
{
	struct race_writer w[8];
	struct tph_importer_attach a;
	unsigned int i, n = 0, sets = 0;
	int r = 0, set_err = 0;

	if (!threads || threads > 8 || !queries) {
		fprintf(stderr, "tphctl: race takes 1..8 threads and at least one query\n");
		exit(EINVAL);
	}
	r = importer();
	if (r)
		return r;
	race_stop = 0;
	for (i = 0; i < threads; i++) {
		w[i] = (struct race_writer){ .t = i };
		if (pthread_create(&w[i].thread, NULL, race_write, &w[i]))
			return -EAGAIN;
	}
	printf("{\"step\": \"race-queries\", \"observed\": [");
	for (n = 0; n < queries; n++) {
		a = (struct tph_importer_attach){ .dmabuf_fd = cur->dmabuf };
		if (ioctl(cur->importer, TPH_IMPORTER_ATTACH, &a)) {
			r = -errno;
			break;
		}
		printf("%s[%d, %u, %u]", n ? ", " : "", a.ret, a.st, a.ph);
		if (ioctl(cur->importer, TPH_IMPORTER_DETACH)) {
			r = -errno;
			n++;
			break;
		}
	}
	printf("]}\n");
	race_stop = 1;
	for (i = 0; i < threads; i++) {
		pthread_join(w[i].thread, NULL);
		sets += w[i].sets;
		if (w[i].err && !set_err)
			set_err = w[i].err;
	}
	emit("race", r, -r, "\"threads\": %u, \"queries\": %u, \"sets\": %u, "
	     "\"set_errno\": %d", threads, n, sets, set_err);
	return r;
}

/*
 * fuzz: THREADS threads, OPS operations in all, each picked at random (a
 * seeded xorshift per thread) among the uAPI's and the importer's: dma-bufs
 * of the exporter (any range) and of the other device, SET (fields from
 * small tables, now and then any value) and PROBE, closes, decode off and
 * on, resets, and each thread's importer files: ATTACH of any fd, DMA and
 * reads anywhere, COPY from another thread's file, STATUS, DETACH, reopen.
 * The fds live in a pool that every thread takes from, closes and refills,
 * so each operation can meet a fd another thread just closed or replaced.
 * The interleaving is the scheduler's: a seed fixes each thread's choices,
 * not their order. Prints what it did and every SET that succeeded.
 */
#define FUZZ_POOL 16
#define FUZZ_SETS 4096

static const uint8_t fuzz_st8[] = { 0x00, 0x01, 0x42, 0x7f, 0x80, 0xa3, 0xfe, 0xff };
static const uint16_t fuzz_st16[] = { 0x0000, 0x0001, 0x00ff, 0x0100, 0x01a3, 0x7fff,
				      0x8000, 0xffff };

static int fuzz_pool[FUZZ_POOL];
static pthread_mutex_t fuzz_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t fuzz_sets[FUZZ_SETS][4];
static unsigned int fuzz_nsets;
static unsigned long long fuzz_size;

enum { FZ_GET, FZ_GET_OTHER, FZ_SET, FZ_PROBE, FZ_CLOSE, FZ_DECODE, FZ_RESET, FZ_ATTACH,
       FZ_DMA, FZ_STATUS, FZ_DETACH, FZ_COPY, FZ_REOPEN, FZ_SET_BAD_FD, FZ_NR };
/* How often each operation comes, out of the sum */
static const unsigned int fuzz_weight[FZ_NR] = {
	[FZ_GET] = 8, [FZ_GET_OTHER] = 2, [FZ_SET] = 16, [FZ_PROBE] = 2, [FZ_CLOSE] = 6,
	[FZ_DECODE] = 2, [FZ_RESET] = 1, [FZ_ATTACH] = 10, [FZ_DMA] = 16, [FZ_STATUS] = 4,
	[FZ_DETACH] = 6, [FZ_COPY] = 4, [FZ_REOPEN] = 2, [FZ_SET_BAD_FD] = 3 };

struct fuzzer {
	pthread_t thread;
	uint64_t rng;
	unsigned int ops, t;
	int importer;
	unsigned long long n[FZ_NR], ok[FZ_NR];
};

static struct fuzzer fuzzers[8];

static uint64_t fuzz_rand(struct fuzzer *f)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

static unsigned int fuzz_pick(struct fuzzer *f, unsigned int n)
{
	return (unsigned int)(fuzz_rand(f) % n);
}

/* Put fd into a random pool entry, closing what was there */
static void fuzz_put(struct fuzzer *f, int fd)
{
	int old = __atomic_exchange_n(&fuzz_pool[fuzz_pick(f, FUZZ_POOL)], fd, __ATOMIC_SEQ_CST);

	if (old >= 0)
		close(old);
}

/* Mostly a pool entry (maybe closed or replaced meanwhile), else any fd */
static int fuzz_fd(struct fuzzer *f)
{
	switch (fuzz_pick(f, 16)) {
	case 0:
		return -1;
	case 1:
		return fuzzers[fuzz_pick(f, 8)].importer;
	case 2:
		return (int)fuzz_pick(f, 64);
	default:
		return __atomic_load_n(&fuzz_pool[fuzz_pick(f, FUZZ_POOL)], __ATOMIC_SEQ_CST);
	}
}

static void fuzz_note_set(unsigned int flags, unsigned int st, unsigned int st_ext,
			  unsigned int ph)
{
	unsigned int i;

	pthread_mutex_lock(&fuzz_lock);
	for (i = 0; i < fuzz_nsets; i++)
		if (fuzz_sets[i][0] == flags && fuzz_sets[i][1] == st &&
		    fuzz_sets[i][2] == st_ext && fuzz_sets[i][3] == ph)
			break;
	if (i == fuzz_nsets && fuzz_nsets < FUZZ_SETS) {
		fuzz_sets[i][0] = flags;
		fuzz_sets[i][1] = st;
		fuzz_sets[i][2] = st_ext;
		fuzz_sets[i][3] = ph;
		fuzz_nsets++;
	}
	pthread_mutex_unlock(&fuzz_lock);
}

static int fuzz_get(struct fuzzer *f, struct vdev *v)
{
	unsigned int region = fuzz_pick(f, 8) ? 2 : fuzz_pick(f, 6);
	unsigned long long offset = 0, length = fuzz_size;
	int fd;

	if (fuzz_pick(f, 2)) {
		offset = (fuzz_rand(f) % (fuzz_size + 1)) & ~0xfffULL;
		length = fuzz_pick(f, 4) ? fuzz_size - offset : fuzz_rand(f);
		if (fuzz_pick(f, 8) == 0)
			offset |= fuzz_pick(f, 4096);
	}
	fd = dmabuf_get(v, region, offset, length);
	if (fd < 0)
		return fd;
	fuzz_put(f, fd);
	return 0;
}

static int fuzz_set(struct fuzzer *f, int fd)
{
	unsigned int flags = fuzz_pick(f, 4);
	unsigned int st = fuzz_st8[fuzz_pick(f, 8)], st_ext = fuzz_st16[fuzz_pick(f, 8)];
	unsigned int ph = fuzz_pick(f, 4);
	int delta = 0, r;

	if (fuzz_pick(f, 16) == 0)
		flags = (unsigned int)fuzz_rand(f);
	if (fuzz_pick(f, 16) == 0)
		ph = fuzz_pick(f, 256);
	if (fuzz_pick(f, 32) == 0)
		delta = (int)fuzz_pick(f, 16) - 8;
	r = tph_feature(VFIO_DEVICE_FEATURE_SET, fd, flags, st, st_ext, ph, delta);
	if (!r)
		fuzz_note_set(flags, st, st_ext, ph);
	return r;
}

static int fuzz_dma(struct fuzzer *f)
{
	struct tph_importer_dma d = { 0 };

	d.offset = fuzz_pick(f, 4) ? fuzz_rand(f) % (fuzz_size + 1) : fuzz_rand(f);
	d.len = fuzz_pick(f, 16) ? 1 + fuzz_pick(f, 8192) : (uint32_t)fuzz_rand(f);
	d.pattern = (uint32_t)fuzz_rand(f);
	d.count = 1;
	if (fuzz_pick(f, 4) == 0)
		d.flags = TPH_IMPORTER_DMA_READ;
	return ioctl(f->importer, TPH_IMPORTER_DMA, &d) ? -errno : 0;
}

static int fuzz_copy(struct fuzzer *f)
{
	struct tph_importer_copy c = { 0 };

	c.src_fd = fuzzers[fuzz_pick(f, 8)].importer;
	c.src_offset = fuzz_rand(f) % (fuzz_size + 1);
	c.offset = fuzz_rand(f) % (fuzz_size + 1);
	c.len = 1 + fuzz_pick(f, 4096);
	return ioctl(f->importer, TPH_IMPORTER_COPY, &c) ? -errno : 0;
}

static int fuzz_one(struct fuzzer *f, unsigned int op)
{
	struct tph_importer_attach a = { 0 };
	struct tph_importer_status st = { 0 };
	int fd, old, r;

	switch (op) {
	case FZ_GET:
		return fuzz_get(f, &xp);
	case FZ_GET_OTHER:
		return other.device >= 0 ? fuzz_get(f, &other) : -ENODEV;
	case FZ_SET:
		return fuzz_set(f, fuzz_fd(f));
	case FZ_PROBE:
		return tph_feature(VFIO_DEVICE_FEATURE_PROBE, -1, 0, 0, 0, 0, 0);
	case FZ_CLOSE:
		old = __atomic_exchange_n(&fuzz_pool[fuzz_pick(f, FUZZ_POOL)], -1,
					  __ATOMIC_SEQ_CST);
		return old >= 0 ? (close(old) ? -errno : 0) : -EBADF;
	case FZ_DECODE:
		return config_command(fuzz_pick(f, 4) != 0);
	case FZ_RESET:
		return ioctl(xp.device, VFIO_DEVICE_RESET) ? -errno : 0;
	case FZ_ATTACH:
		a.dmabuf_fd = fuzz_fd(f);
		return ioctl(f->importer, TPH_IMPORTER_ATTACH, &a) ? -errno : 0;
	case FZ_DMA:
		return fuzz_dma(f);
	case FZ_STATUS:
		return ioctl(f->importer, TPH_IMPORTER_STATUS, &st) ? -errno : 0;
	case FZ_DETACH:
		return ioctl(f->importer, TPH_IMPORTER_DETACH) ? -errno : 0;
	case FZ_COPY:
		return fuzz_copy(f);
	case FZ_REOPEN:
		fd = open_importer();
		if (fd < 0)
			return -errno;
		old = __atomic_exchange_n(&f->importer, fd, __ATOMIC_SEQ_CST);
		close(old);
		return 0;
	default:
		fd = fuzz_pick(f, 2) ? eventfd(0, EFD_CLOEXEC) : open_importer();
		if (fd < 0)
			return -errno;
		if (fuzz_pick(f, 2)) {
			r = fuzz_set(f, fd);
			close(fd);
			return r;
		}
		fuzz_put(f, fd);	/* a fd of another kind, passed around */
		return 0;
	}
}

static void *fuzz_thread(void *arg)
{
	struct fuzzer *f = arg;
	unsigned int i, op, w, sum = 0;

	for (op = 0; op < FZ_NR; op++)
		sum += fuzz_weight[op];
	for (i = 0; i < f->ops; i++) {
		w = fuzz_pick(f, sum);
		for (op = 0; w >= fuzz_weight[op]; op++)
			w -= fuzz_weight[op];
		f->n[op]++;
		if (!fuzz_one(f, op))
			f->ok[op]++;
	}
	return NULL;
}

static int step_fuzz(unsigned int seed, unsigned int ops, unsigned int threads)
{
	static const char *const names[FZ_NR] = {
		"get", "get_other", "set", "probe", "close", "decode", "reset", "attach",
		"dma", "status", "detach", "copy", "reopen", "set_bad_fd" };
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 2 };
	unsigned int i, op;
	int r = 0;

	if (!threads || threads > 8 || !ops) {
		fprintf(stderr, "tphctl: fuzz takes 1..8 threads and at least one operation\n");
		exit(EINVAL);
	}
	if (ioctl(xp.device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return -errno;
	fuzz_size = ri.size;
	for (i = 0; i < FUZZ_POOL; i++)
		fuzz_pool[i] = -1;
	for (i = 0; i < 8; i++) {
		fuzzers[i] = (struct fuzzer){ .t = i, .importer = -1,
			.rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + i + 1,
			.ops = i < threads ? ops / threads + (i < ops % threads) : 0 };
		fuzzers[i].importer = open_importer();
		if (fuzzers[i].importer < 0)
			return -errno;
	}
	for (i = 0; i < threads; i++)
		if (pthread_create(&fuzzers[i].thread, NULL, fuzz_thread, &fuzzers[i]))
			return -EAGAIN;
	for (i = 0; i < threads; i++)
		pthread_join(fuzzers[i].thread, NULL);
	r = config_command(1);
	printf("{\"step\": \"fuzz\", \"ret\": %d, \"errno\": %d, \"error\": \"%s\", "
	       "\"seed\": %u, \"threads\": %u", r, -r, r ? strerror(-r) : "", seed, threads);
	for (op = 0; op < FZ_NR; op++) {
		unsigned long long n = 0, ok = 0;

		for (i = 0; i < threads; i++) {
			n += fuzzers[i].n[op];
			ok += fuzzers[i].ok[op];
		}
		printf(", \"%s\": [%llu, %llu]", names[op], n, ok);
	}
	printf(", \"sets\": [");
	for (i = 0; i < fuzz_nsets; i++)
		printf("%s[%u, %u, %u, %u]", i ? ", " : "", fuzz_sets[i][0], fuzz_sets[i][1],
		       fuzz_sets[i][2], fuzz_sets[i][3]);
	printf("]}\n");
	fflush(stdout);
	return r;
}

static unsigned long long dma_offset(const char *s)
{
	if (!strncmp(s, "end", 3))
		return cur->attached_size + (s[3] ? num(s + 3) : 0);
	return (unsigned long long)num(s);
}

/* Start the dma-start thread on bg.d with the current importer file */
static int bg_start(void)
{
	int r = importer();

	bg.fd = cur->importer;
	bg.r = 0;
	bg.ms = 0;
	if (!r) {
		r = -pthread_create(&bg.thread, NULL, dma_thread, NULL);
		bg.running = !r;
	}
	return r;
}

static void need(int argc, int i, int n, const char *step)
{
	if (i + n >= argc) {
		fprintf(stderr, "tphctl: step %s needs %d argument(s)\n", step, n);
		exit(EINVAL);
	}
}

/* cpu-st CPU MEM, cpu-st-use CPU MEM PH: returns the arguments it took */
static int cpu_st_step(const char *s, int argc, char **argv, int i, int use)
{
	struct tph_importer_cpu_st c = { 0 };
	int n = use ? 3 : 2;
	int r;

	need(argc, i, n, s);
	c.cpu = (uint32_t)num(argv[i + 1]);
	c.mem_type = (uint32_t)num(argv[i + 2]);
	if (use) {
		c.flags = TPH_IMPORTER_CPU_ST_USE;
		c.ph = (uint8_t)num(argv[i + 3]);
	}
	r = importer();
	if (!r && ioctl(cur->importer, TPH_IMPORTER_CPU_ST, &c))
		r = -errno;
	emit(s, r, -r, "\"cpu\": %u, \"mem_type\": %u, \"tph_ret\": %d, \"st\": %u, "
	     "\"req_type\": %u", c.cpu, c.mem_type, c.ret, c.st, c.req_type);
	return n;
}

int main(int argc, char **argv)
{
	int keep_going = 0, first_err = 0, i = 1;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "-k")) {
		keep_going = 1;
		i++;
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return EINVAL;
	}
	for (; i < argc; i++) {
		const char *s = argv[i], *how = "";
		int r = 0;

		if (!strcmp(s, "open")) {
			need(argc, i, 1, s);
			argv[i + 1] = (char *)bdf_of(argv[i + 1]);
			r = step_open(&xp, argv[++i], &how);
			emit(s, r, -r, "\"bdf\": \"%s\", \"device_fd\": %d, \"vfio\": \"%s\"",
			     argv[i], xp.device, how);
		} else if (!strcmp(s, "other")) {
			unsigned long long size = 0;

			need(argc, i, 1, s);
			argv[i + 1] = (char *)bdf_of(argv[i + 1]);
			r = step_open(&other, argv[++i], &how);
			if (!r)
				r = step_get(&other, 2, &size, &other.dmabuf);
			emit(s, r, -r, "\"bdf\": \"%s\", \"fd\": %d", argv[i], other.dmabuf);
		} else if (!strcmp(s, "get")) {
			unsigned long long size = 0;
			unsigned int region = 2;

			if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9')
				region = (unsigned int)num(argv[++i]);
			r = step_get(&xp, region, &size, &cur->dmabuf);
			emit(s, r, -r, "\"region\": %u, \"fd\": %d, \"size\": %llu", region,
			     cur->dmabuf, size);
		} else if (!strcmp(s, "slot")) {
			long n;

			need(argc, i, 1, s);
			n = num(argv[++i]);
			if (n < 0 || n >= NR_SLOTS) {
				fprintf(stderr, "tphctl: slot takes 0..%d\n", NR_SLOTS - 1);
				return EINVAL;
			}
			cur = &slots[n];
			emit(s, 0, 0, "\"slot\": %ld", n);
		} else if (!strcmp(s, "probe")) {
			r = tph_feature(VFIO_DEVICE_FEATURE_PROBE, -1, 0, 0, 0, 0, 0);
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "set")) {
			need(argc, i, 4, s);
			r = tph_feature(VFIO_DEVICE_FEATURE_SET, cur->dmabuf, num(argv[i + 1]),
					num(argv[i + 2]), num(argv[i + 3]), num(argv[i + 4]), 0);
			emit(s, r, -r, "\"flags\": %ld, \"st\": %ld, \"st_ext\": %ld, \"ph\": %ld",
			     num(argv[i + 1]), num(argv[i + 2]), num(argv[i + 3]), num(argv[i + 4]));
			i += 4;
		} else if (!strcmp(s, "set-raw")) {
			need(argc, i, 6, s);
			r = tph_feature(VFIO_DEVICE_FEATURE_SET, pick_fd(argv[i + 1]),
					num(argv[i + 2]), num(argv[i + 3]), num(argv[i + 4]),
					num(argv[i + 5]), (int)num(argv[i + 6]));
			emit(s, r, -r, "\"fd\": \"%s\"", argv[i + 1]);
			i += 6;
		} else if (!strcmp(s, "tph-get")) {
			r = tph_feature(VFIO_DEVICE_FEATURE_GET, cur->dmabuf, 0, 0, 0, 0, 0);
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "attach")) {
			struct tph_importer_attach a = { .dmabuf_fd = cur->dmabuf };

			/* Open the importer first: a "closed" fd must stay closed */
			r = importer();
			if (i + 1 < argc && (!strcmp(argv[i + 1], "closed") ||
					     !strcmp(argv[i + 1], "eventfd") ||
					     (argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') ||
					     argv[i + 1][0] == '-'))
				a.dmabuf_fd = pick_fd(argv[++i]);
			if (!r && ioctl(cur->importer, TPH_IMPORTER_ATTACH, &a))
				r = -errno;
			if (!r)
				cur->attached_size = a.size;
			emit(s, r, -r, "\"tph_ret\": %d, \"st\": %u, \"ph\": %u, \"ext\": %u, "
			     "\"req_type\": %u, \"size\": %llu", a.ret, a.st, a.ph, a.ext,
			     a.req_type, (unsigned long long)a.size);
		} else if (!strcmp(s, "dma")) {
			struct tph_importer_dma d = { 0 };

			need(argc, i, 3, s);
			d.offset = dma_offset(argv[i + 1]);
			d.len = (__u32)num(argv[i + 2]);
			d.pattern = (__u32)strtoul(argv[i + 3], NULL, 0);
			d.count = 1;
			i += 3;
			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_DMA, &d))
				r = -errno;
			emit(s, r, -r, "\"offset\": %llu, \"len\": %u, \"status\": %u, "
			     "\"tph_ret\": %d, \"th\": %u, \"st\": %u, \"ph\": %u, \"ext\": %u, "
			     "\"remapped\": %u", (unsigned long long)d.offset, d.len, d.status,
			     d.ret, d.th, d.st, d.ph, d.ext, d.remapped);
		} else if (!strcmp(s, "dma-stale")) {
			struct tph_importer_dma d = { 0 };

			need(argc, i, 2, s);
			d.len = (__u32)num(argv[i + 1]);
			d.pattern = (__u32)strtoul(argv[i + 2], NULL, 0);
			i += 2;
			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_DMA_STALE, &d))
				r = -errno;
			emit(s, r, -r, "\"len\": %u, \"status\": %u, \"done\": %u", d.len,
			     d.status, d.done);
		} else if (!strcmp(s, "read")) {
			struct tph_importer_dma d = { 0 };

			need(argc, i, 2, s);
			d.offset = dma_offset(argv[i + 1]);
			d.len = (__u32)num(argv[i + 2]);
			d.count = 1;
			d.flags = TPH_IMPORTER_DMA_READ;
			i += 2;
			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_DMA, &d))
				r = -errno;
			emit(s, r, -r, "\"offset\": %llu, \"len\": %u, \"status\": %u, "
			     "\"tph_ret\": %d, \"th\": %u, \"st\": %u, \"ph\": %u, \"ext\": %u, "
			     "\"remapped\": %u", (unsigned long long)d.offset, d.len, d.status,
			     d.ret, d.th, d.st, d.ph, d.ext, d.remapped);
		} else if (!strcmp(s, "copy")) {
			struct tph_importer_copy c = { 0 };
			long n;

			need(argc, i, 4, s);
			n = num(argv[i + 1]);
			if (n < 0 || n >= NR_SLOTS) {
				fprintf(stderr, "tphctl: copy takes a slot 0..%d\n", NR_SLOTS - 1);
				return EINVAL;
			}
			c.src_fd = slots[n].importer;
			c.src_offset = strtoull(argv[i + 2], NULL, 0);
			c.offset = strtoull(argv[i + 3], NULL, 0);
			c.len = (__u32)num(argv[i + 4]);
			i += 4;
			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_COPY, &c))
				r = -errno;
			emit(s, r, -r, "\"offset\": %llu, \"len\": %u, \"status\": %u, "
			     "\"tph_ret\": %d, \"th\": %u, \"st\": %u, \"ph\": %u, \"ext\": %u, "
			     "\"remapped\": %u, \"slot\": %ld, \"src_offset\": %llu",
			     (unsigned long long)c.offset, c.len, c.status, c.ret, c.th, c.st, c.ph,
			     c.ext, c.remapped, n, (unsigned long long)c.src_offset);
		} else if (!strcmp(s, "dma-start")) {
			need(argc, i, 4, s);
			if (bg.running) {
				fprintf(stderr, "tphctl: %s while one runs\n", s);
				return EINVAL;
			}
			memset(&bg.d, 0, sizeof(bg.d));
			bg.d.offset = dma_offset(argv[i + 1]);
			bg.d.len = (__u32)num(argv[i + 2]);
			bg.d.pattern = (__u32)strtoul(argv[i + 3], NULL, 0);
			bg.d.count = (__u32)num(argv[i + 4]);
			i += 4;
			r = bg_start();
			emit(s, r, -r, "\"count\": %u", bg.d.count);
		} else if (!strcmp(s, "read-start")) {
			need(argc, i, 3, s);
			if (bg.running) {
				fprintf(stderr, "tphctl: %s while one runs\n", s);
				return EINVAL;
			}
			memset(&bg.d, 0, sizeof(bg.d));
			bg.d.offset = dma_offset(argv[i + 1]);
			bg.d.len = (__u32)num(argv[i + 2]);
			bg.d.count = (__u32)num(argv[i + 3]);
			bg.d.flags = TPH_IMPORTER_DMA_READ;
			i += 3;
			r = bg_start();
			emit(s, r, -r, "\"count\": %u", bg.d.count);
		} else if (!strcmp(s, "dma-wait")) {
			if (!bg.running) {
				fprintf(stderr, "tphctl: dma-wait without dma-start\n");
				return EINVAL;
			}
			pthread_join(bg.thread, NULL);
			bg.running = 0;
			r = bg.r;
			emit(s, r, -r, "\"offset\": %llu, \"len\": %u, \"count\": %u, "
			     "\"done\": %u, \"status\": %u, \"tph_ret\": %d, \"th\": %u, "
			     "\"st\": %u, \"ph\": %u, \"ext\": %u, \"remapped\": %u, \"ms\": %ld",
			     (unsigned long long)bg.d.offset, bg.d.len, bg.d.count, bg.d.done,
			     bg.d.status, bg.d.ret, bg.d.th, bg.d.st, bg.d.ph, bg.d.ext,
			     bg.d.remapped, bg.ms);
		} else if (!strcmp(s, "detach")) {
			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_DETACH))
				r = -errno;
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "status")) {
			struct tph_importer_status st = { 0 };

			r = importer();
			if (!r && ioctl(cur->importer, TPH_IMPORTER_STATUS, &st))
				r = -errno;
			emit(s, r, -r, "\"attached\": %u, \"mapped\": %u, \"invalidations\": %u, "
			     "\"maps\": %u, \"dmas\": %u, \"tph_ret\": %d, \"req_type\": %u, "
			     "\"th\": %u, \"st\": %u, \"ph\": %u, \"ext\": %u, \"query_ret\": %d, "
			     "\"domain\": %u, \"dma_addr\": %llu",
			     st.attached, st.mapped, st.invalidations, st.maps, st.dmas, st.ret,
			     st.req_type, st.th, st.st, st.ph, st.ext, st.query_ret, st.domain,
			     (unsigned long long)st.dma_addr);
		} else if (!strcmp(s, "cpu-st")) {
			i += cpu_st_step(s, argc, argv, i, 0);
		} else if (!strcmp(s, "cpu-st-use")) {
			i += cpu_st_step(s, argc, argv, i, 1);
		} else if (!strcmp(s, "decode")) {
			long t0 = now_ms();

			need(argc, i, 1, s);
			r = config_command(!strcmp(argv[++i], "on"));
			emit(s, r, -r, "\"on\": %d, \"ms\": %ld", !strcmp(argv[i], "on"),
			     now_ms() - t0);
		} else if (!strcmp(s, "poke")) {
			need(argc, i, 2, s);
			r = bar2_poke((unsigned long long)num(argv[i + 1]),
				      (uint32_t)strtoul(argv[i + 2], NULL, 0));
			emit(s, r, -r, "\"offset\": \"%s\"", argv[i + 1]);
			i += 2;
		} else if (!strcmp(s, "reset")) {
			r = ioctl(xp.device, VFIO_DEVICE_RESET) ? -errno : 0;
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "close-device")) {
			r = close(xp.device) ? -errno : 0;
			xp.device = -1;
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "close-dmabuf")) {
			r = close(cur->dmabuf) ? -errno : 0;
			cur->dmabuf = -1;
			emit(s, r, -r, NULL);
		} else if (!strcmp(s, "race")) {
			need(argc, i, 2, s);
			r = step_race((unsigned int)num(argv[i + 1]), (unsigned int)num(argv[i + 2]));
			i += 2;
		} else if (!strcmp(s, "fuzz")) {
			need(argc, i, 3, s);
			r = step_fuzz((unsigned int)num(argv[i + 1]), (unsigned int)num(argv[i + 2]),
				      (unsigned int)num(argv[i + 3]));
			i += 3;
		} else if (!strcmp(s, "sleep")) {
			need(argc, i, 1, s);
			struct timespec ts = { 0, 0 };
			long ms = num(argv[++i]);

			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (ms % 1000) * 1000000L;
			nanosleep(&ts, NULL);
			emit(s, 0, 0, NULL);
		} else {
			fprintf(stderr, "tphctl: unknown step %s (tphctl --help lists them)\n", s);
			return EINVAL;
		}
		if (r && !first_err)
			first_err = -r;
		if (r && !keep_going)
			break;
	}
	return first_err > 255 ? 255 : first_err;
}
