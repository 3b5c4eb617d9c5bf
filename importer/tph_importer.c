// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test importer for PCIe TPH hints on dma-bufs
 *
 * Binds the QEMU tph-testdev PCI device and lets userspace, through
 * /dev/tph-importer, make it DMA into a dma-buf of another device (for
 * example one exported by vfio-pci) with the PCIe TLP Processing Hints
 * that the exporter returns from dma_buf_get_pci_tph().
 *
 * The attachment is dynamic and peer-to-peer. The hints are queried right
 * after each mapping, under the same hold of the reservation lock, and are
 * dropped together with the mapping when the exporter invalidates it; the
 * next DMA maps again and queries again. DMAs run under the reservation
 * lock, so an invalidation never overlaps one.
 *
 * Test only, not for upstream: an out-of-tree module of the tphlab bench,
 * built with "make M=" against whichever kernel is under test. It needs
 * from that kernel only the API of the TPH dma-buf series from v8 on:
 * dma_buf_get_pci_tph() and pcie_tph_enabled_req_type().
 */
#include <linux/bitfield.h>
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/pci-tph.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <uapi/misc/tph_importer.h>

#if !IS_ENABLED(CONFIG_PCIE_TPH)
#error "tph_importer needs CONFIG_PCIE_TPH (the ST table helpers)"
#endif
#if !IS_ENABLED(CONFIG_DMA_SHARED_BUFFER)
#error "tph_importer needs CONFIG_DMA_SHARED_BUFFER (select it, e.g. with CONFIG_DMABUF_HEAPS)"
#endif

MODULE_IMPORT_NS("DMA_BUF");

#define PCI_DEVICE_ID_REDHAT_TPH_TESTDEV	0x0015

/*
 * tph-testdev BAR0 registers: 32-bit, little endian; layout as in QEMU's
 * docs/specs/tph-testdev.rst.
 */
#define TPH_IMP_REG_ID			0x00	/* RO */
#define TPH_IMP_REG_NR_VECTORS		0x04	/* RO, MSI-X vectors */
#define TPH_IMP_REG_MEM_SIZE		0x08	/* RO, BAR2 size */
#define TPH_IMP_REG_DMA_MAX		0x0c	/* RO, max DMA length */
#define TPH_IMP_REG_DMA_ADDR_LO		0x10	/* target bus address */
#define TPH_IMP_REG_DMA_ADDR_HI		0x14
#define TPH_IMP_REG_DMA_LEN		0x18	/* bytes, 1..DMA_MAX */
#define TPH_IMP_REG_DMA_PATTERN		0x1c	/* 32-bit, repeated */
#define TPH_IMP_REG_DMA_ST_INDEX	0x20	/* ST table index (DS mode) */
#define TPH_IMP_REG_DMA_PH		0x24	/* Processing Hint */
#define TPH_IMP_REG_DMA_ST		0x28	/* DS mode ST without a table */
#define TPH_IMP_REG_DMA_CMD		0x2c	/* WO */
#define  TPH_IMP_CMD_START		BIT(0)
#define TPH_IMP_REG_DMA_STATUS		0x30	/* RW1C */
#define  TPH_IMP_STATUS_BUSY		BIT(0)
#define  TPH_IMP_STATUS_DONE		BIT(1)
#define  TPH_IMP_STATUS_ERROR		BIT(2)
#define TPH_IMP_REG_DMA_COUNT		0x34	/* RO, completed DMAs */
#define TPH_IMP_REG_DMA_LAST_HINT	0x38	/* RO */

/* ST table entry that holds the tag of the attached dma-buf */
#define TPH_IMP_ST_INDEX		0

#define TPH_IMP_DMA_TIMEOUT_MS		2000

struct tph_imp {
	struct list_head node;		/* in tph_imp_devices */
	struct kref kref;		/* device binding and open files */
	struct pci_dev *pdev;
	void __iomem *regs;
	bool gone;			/* unbound */

	/* Attachment, under tph_imp_lock */
	struct file *owner;
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	u32 dmas;

	/* Mapping and hints, under dmabuf->resv while attached */
	struct sg_table *sgt;
	u32 invalidations;
	u32 maps;
	int tph_ret;
	u8 req_type;
	bool ext;
	bool th;
	u16 st;
	u8 ph;
};

/* Protects tph_imp_devices and every attachment */
static DEFINE_MUTEX(tph_imp_lock);
static LIST_HEAD(tph_imp_devices);

static void tph_imp_free(struct kref *kref)
{
	kfree(container_of(kref, struct tph_imp, kref));
}

static bool tph_imp_engine_idle(struct tph_imp *imp)
{
	return !(readl(imp->regs + TPH_IMP_REG_DMA_STATUS) & TPH_IMP_STATUS_BUSY);
}

/* Make sure the DMA engine no longer accesses the dma-buf */
static void tph_imp_quiesce(struct tph_imp *imp)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(TPH_IMP_DMA_TIMEOUT_MS);

	while (!tph_imp_engine_idle(imp)) {
		if (time_after(jiffies, timeout)) {
			pci_warn(imp->pdev, "DMA engine still busy\n");
			return;
		}
		usleep_range(50, 100);
	}
}

static int tph_imp_run_dma(struct tph_imp *imp, dma_addr_t addr, u32 len,
			   u32 pattern, u32 *status)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(TPH_IMP_DMA_TIMEOUT_MS);
	u32 count, st;

	count = readl(imp->regs + TPH_IMP_REG_DMA_COUNT);

	writel(lower_32_bits(addr), imp->regs + TPH_IMP_REG_DMA_ADDR_LO);
	writel(upper_32_bits(addr), imp->regs + TPH_IMP_REG_DMA_ADDR_HI);
	writel(len, imp->regs + TPH_IMP_REG_DMA_LEN);
	writel(pattern, imp->regs + TPH_IMP_REG_DMA_PATTERN);
	writel(TPH_IMP_ST_INDEX, imp->regs + TPH_IMP_REG_DMA_ST_INDEX);
	writel(imp->th ? imp->ph : 0, imp->regs + TPH_IMP_REG_DMA_PH);
	writel(imp->th ? imp->st : 0, imp->regs + TPH_IMP_REG_DMA_ST);
	writel(TPH_IMP_CMD_START, imp->regs + TPH_IMP_REG_DMA_CMD);

	for (;;) {
		st = readl(imp->regs + TPH_IMP_REG_DMA_STATUS);
		if (st & TPH_IMP_STATUS_ERROR)
			break;
		if (!(st & TPH_IMP_STATUS_BUSY) &&
		    readl(imp->regs + TPH_IMP_REG_DMA_COUNT) != count)
			break;
		if (time_after(jiffies, timeout)) {
			*status = st;
			return -ETIMEDOUT;
		}
		usleep_range(20, 50);
	}

	*status = st;
	return st & TPH_IMP_STATUS_ERROR ? -EIO : 0;
}

/*
 * Query the hints for a fresh mapping and program the device with them.
 * Called with the reservation lock held, right after the mapping was made:
 * the hints are valid exactly as long as that mapping.
 */
static int tph_imp_setup_hints(struct tph_imp *imp)
{
	struct pci_dev *pdev = imp->pdev;
	u16 st = 0;
	u8 ph = 0;
	u32 loc;
	int ret;

	dma_resv_assert_held(imp->dmabuf->resv);

	imp->th = false;
	imp->st = 0;
	imp->ph = 0;

	/* Device Specific mode: the DMA engine names the ST table entry */
	if (pcie_tph_enabled_req_type(pdev) == PCI_TPH_REQ_DISABLE) {
		ret = pcie_enable_tph(pdev, PCI_TPH_ST_DS_MODE);
		if (ret) {
			imp->req_type = PCI_TPH_REQ_DISABLE;
			imp->ext = false;
			imp->tph_ret = ret;
			return 0;
		}
	}

	/* Ask for the Steering Tag namespace the device may use */
	imp->req_type = pcie_tph_enabled_req_type(pdev);
	imp->ext = imp->req_type == PCI_TPH_REQ_EXT_TPH;

	ret = dma_buf_get_pci_tph(imp->dmabuf, imp->ext, &st, &ph);
	imp->tph_ret = ret;
	if (ret == -EOPNOTSUPP)
		goto no_hints;
	if (ret)
		return ret;

	imp->st = st;
	imp->ph = ph;

	/*
	 * With an ST table the engine names entry TPH_IMP_ST_INDEX; without
	 * one, Device Specific mode takes the tag from the DMA_ST register.
	 */
	loc = FIELD_PREP(PCI_TPH_CAP_LOC_MASK, pcie_tph_get_st_table_loc(pdev));
	if (loc != PCI_TPH_LOC_NONE) {
		ret = pcie_tph_set_st_entry(pdev, TPH_IMP_ST_INDEX, st);
		if (ret) {
			imp->tph_ret = ret;
			goto no_hints;
		}
	}

	imp->th = true;
	return 0;

no_hints:
	/* TPH Requester Enable 00b: requests go out without hints */
	pcie_disable_tph(pdev);
	return 0;
}

static void tph_imp_unmap(struct tph_imp *imp)
{
	dma_resv_assert_held(imp->dmabuf->resv);

	imp->th = false;
	if (!imp->sgt)
		return;

	dma_buf_unmap_attachment(imp->attach, imp->sgt, DMA_BIDIRECTIONAL);
	imp->sgt = NULL;
}

static int tph_imp_map(struct tph_imp *imp)
{
	struct sg_table *sgt;
	int ret;

	dma_resv_assert_held(imp->dmabuf->resv);

	sgt = dma_buf_map_attachment(imp->attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);
	imp->sgt = sgt;

	ret = tph_imp_setup_hints(imp);
	if (ret) {
		tph_imp_unmap(imp);
		return ret;
	}

	imp->maps++;
	return 0;
}

static void tph_imp_invalidate_mappings(struct dma_buf_attachment *attach)
{
	struct tph_imp *imp = attach->importer_priv;

	dma_resv_assert_held(attach->dmabuf->resv);

	imp->invalidations++;

	/*
	 * DMAs run under the reservation lock, so none is in flight here,
	 * unless one timed out: wait for the engine before giving the memory
	 * back. The hints go with the mapping; the next DMA maps again and
	 * asks for them again.
	 */
	tph_imp_quiesce(imp);
	tph_imp_unmap(imp);
}

static const struct dma_buf_attach_ops tph_imp_attach_ops = {
	.allow_peer2peer = true,
	.invalidate_mappings = tph_imp_invalidate_mappings,
};

static void tph_imp_detach(struct tph_imp *imp)
{
	lockdep_assert_held(&tph_imp_lock);

	if (!imp->attach)
		return;

	dma_resv_lock(imp->dmabuf->resv, NULL);
	tph_imp_quiesce(imp);
	tph_imp_unmap(imp);
	dma_resv_unlock(imp->dmabuf->resv);

	dma_buf_detach(imp->dmabuf, imp->attach);
	dma_buf_put(imp->dmabuf);
	imp->attach = NULL;
	imp->dmabuf = NULL;
	imp->owner = NULL;

	pcie_disable_tph(imp->pdev);
}

static long tph_imp_ioctl_attach(struct tph_imp *imp, struct file *file,
				 struct tph_importer_attach __user *uarg)
{
	struct tph_importer_attach arg;
	struct dma_buf_attachment *attach;
	struct dma_buf *dmabuf;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;

	if (imp->attach)
		return -EBUSY;

	dmabuf = dma_buf_get(arg.dmabuf_fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	imp->dmabuf = dmabuf;
	imp->sgt = NULL;
	imp->invalidations = 0;
	imp->maps = 0;
	imp->dmas = 0;
	imp->th = false;

	attach = dma_buf_dynamic_attach(dmabuf, &imp->pdev->dev,
					&tph_imp_attach_ops, imp);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto err_put;
	}
	imp->attach = attach;

	ret = dma_resv_lock_interruptible(dmabuf->resv, NULL);
	if (ret)
		goto err_detach;

	ret = tph_imp_map(imp);
	if (!ret) {
		arg.ret = imp->tph_ret;
		arg.st = imp->th ? imp->st : 0;
		arg.ph = imp->th ? imp->ph : 0;
		arg.ext = imp->ext;
		arg.req_type = imp->req_type;
		arg.size = dmabuf->size;
	}
	dma_resv_unlock(dmabuf->resv);
	if (ret)
		goto err_detach;

	imp->owner = file;

	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		tph_imp_detach(imp);
		return -EFAULT;
	}

	return 0;

err_detach:
	dma_buf_detach(dmabuf, attach);
	imp->attach = NULL;
err_put:
	imp->dmabuf = NULL;
	dma_buf_put(dmabuf);
	pcie_disable_tph(imp->pdev);
	return ret;
}

static long tph_imp_ioctl_dma(struct tph_imp *imp,
			      struct tph_importer_dma __user *uarg)
{
	struct tph_importer_dma arg;
	struct scatterlist *sg;
	dma_addr_t addr = 0;
	bool found = false;
	unsigned int i;
	u64 off;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;

	if (!imp->attach)
		return -ENOTCONN;

	if (!arg.len || arg.offset >= imp->dmabuf->size ||
	    arg.len > imp->dmabuf->size - arg.offset ||
	    arg.len > readl(imp->regs + TPH_IMP_REG_DMA_MAX))
		return -EINVAL;

	ret = dma_resv_lock_interruptible(imp->dmabuf->resv, NULL);
	if (ret)
		return ret;

	arg.remapped = 0;
	if (!imp->sgt) {
		/* Invalidated: the old hints are stale, map and ask again */
		ret = tph_imp_map(imp);
		if (ret)
			goto out_unlock;
		arg.remapped = 1;
	}

	off = arg.offset;
	for_each_sgtable_dma_sg(imp->sgt, sg, i) {
		if (off < sg_dma_len(sg)) {
			if (arg.len <= sg_dma_len(sg) - off) {
				addr = sg_dma_address(sg) + off;
				found = true;
			}
			break;
		}
		off -= sg_dma_len(sg);
	}
	if (!found) {
		/* The range spans two DMA segments */
		ret = -EINVAL;
		goto out_unlock;
	}

	ret = tph_imp_run_dma(imp, addr, arg.len, arg.pattern, &arg.status);
	if (!ret)
		imp->dmas++;

	arg.ret = imp->tph_ret;
	arg.th = imp->th;
	arg.st = imp->th ? imp->st : 0;
	arg.ph = imp->th ? imp->ph : 0;
	arg.ext = imp->ext;
	arg.pad = 0;

out_unlock:
	dma_resv_unlock(imp->dmabuf->resv);

	if ((!ret || ret == -EIO) && copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;

	return ret;
}

static long tph_imp_ioctl_status(struct tph_imp *imp,
				 struct tph_importer_status __user *uarg)
{
	struct tph_importer_status arg = {};
	int ret;

	arg.dmas = imp->dmas;
	if (imp->attach) {
		ret = dma_resv_lock_interruptible(imp->dmabuf->resv, NULL);
		if (ret)
			return ret;
		arg.size = imp->dmabuf->size;
		arg.attached = 1;
		arg.mapped = !!imp->sgt;
		arg.th = imp->th;
	}
	arg.invalidations = imp->invalidations;
	arg.maps = imp->maps;
	arg.ret = imp->tph_ret;
	arg.req_type = imp->req_type;
	arg.st = imp->st;
	arg.ph = imp->ph;
	arg.ext = imp->ext;
	if (imp->attach)
		dma_resv_unlock(imp->dmabuf->resv);

	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;

	return 0;
}

static long tph_imp_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct tph_imp *imp = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret;

	mutex_lock(&tph_imp_lock);

	if (imp->gone) {
		ret = -ENODEV;
		goto out;
	}

	switch (cmd) {
	case TPH_IMPORTER_ATTACH:
		ret = tph_imp_ioctl_attach(imp, file, uarg);
		break;
	case TPH_IMPORTER_DMA:
		ret = tph_imp_ioctl_dma(imp, uarg);
		break;
	case TPH_IMPORTER_DETACH:
		ret = imp->attach ? 0 : -ENOTCONN;
		tph_imp_detach(imp);
		break;
	case TPH_IMPORTER_STATUS:
		ret = tph_imp_ioctl_status(imp, uarg);
		break;
	default:
		ret = -ENOTTY;
	}

out:
	mutex_unlock(&tph_imp_lock);
	return ret;
}

static int tph_imp_open(struct inode *inode, struct file *file)
{
	struct tph_imp *imp, *found = NULL;
	unsigned int n = 0;

	mutex_lock(&tph_imp_lock);
	list_for_each_entry(imp, &tph_imp_devices, node) {
		found = imp;
		n++;
	}
	if (n == 1)
		kref_get(&found->kref);
	mutex_unlock(&tph_imp_lock);

	if (!n)
		return -ENODEV;
	if (n > 1) {
		pr_warn_ratelimited("tph_importer: %u devices bound, unbind all but one\n",
				    n);
		return -EBUSY;
	}

	file->private_data = found;
	return nonseekable_open(inode, file);
}

static int tph_imp_release(struct inode *inode, struct file *file)
{
	struct tph_imp *imp = file->private_data;

	mutex_lock(&tph_imp_lock);
	if (imp->owner == file)
		tph_imp_detach(imp);
	mutex_unlock(&tph_imp_lock);

	kref_put(&imp->kref, tph_imp_free);
	return 0;
}

static const struct file_operations tph_imp_fops = {
	.owner = THIS_MODULE,
	.open = tph_imp_open,
	.release = tph_imp_release,
	.unlocked_ioctl = tph_imp_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice tph_imp_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tph-importer",
	.fops = &tph_imp_fops,
};

static int tph_imp_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct tph_imp *imp;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;

	imp = kzalloc_obj(*imp);
	if (!imp)
		return -ENOMEM;
	kref_init(&imp->kref);
	imp->pdev = pdev;

	imp->regs = pcim_iomap_region(pdev, 0, "tph_importer");
	if (IS_ERR(imp->regs)) {
		ret = PTR_ERR(imp->regs);
		goto err_free;
	}

	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_free;

	pci_set_master(pdev);

	/* An ST table in the MSI-X table is only writable with MSI-X enabled */
	if (pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX) < 0)
		pci_dbg(pdev, "no MSI-X\n");

	pci_set_drvdata(pdev, imp);

	mutex_lock(&tph_imp_lock);
	list_add_tail(&imp->node, &tph_imp_devices);
	mutex_unlock(&tph_imp_lock);

	pci_info(pdev, "tph-testdev, ID register %#010x\n",
		 readl(imp->regs + TPH_IMP_REG_ID));
	return 0;

err_free:
	kfree(imp);
	return ret;
}

static void tph_imp_remove(struct pci_dev *pdev)
{
	struct tph_imp *imp = pci_get_drvdata(pdev);

	mutex_lock(&tph_imp_lock);
	tph_imp_detach(imp);
	imp->gone = true;
	list_del(&imp->node);
	mutex_unlock(&tph_imp_lock);

	pcie_disable_tph(pdev);
	pci_free_irq_vectors(pdev);
	kref_put(&imp->kref, tph_imp_free);
}

static const struct pci_device_id tph_imp_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT, PCI_DEVICE_ID_REDHAT_TPH_TESTDEV) },
	{ }
};
MODULE_DEVICE_TABLE(pci, tph_imp_ids);

static struct pci_driver tph_imp_driver = {
	.name = "tph_importer",
	.id_table = tph_imp_ids,
	.probe = tph_imp_probe,
	.remove = tph_imp_remove,
};

static int __init tph_imp_init(void)
{
	int ret;

	ret = misc_register(&tph_imp_misc);
	if (ret)
		return ret;

	ret = pci_register_driver(&tph_imp_driver);
	if (ret)
		misc_deregister(&tph_imp_misc);

	return ret;
}
module_init(tph_imp_init);

static void __exit tph_imp_exit(void)
{
	pci_unregister_driver(&tph_imp_driver);
	misc_deregister(&tph_imp_misc);
}
module_exit(tph_imp_exit);

MODULE_DESCRIPTION("Test importer for PCIe TPH hints on dma-bufs (test only)");
MODULE_LICENSE("GPL");
