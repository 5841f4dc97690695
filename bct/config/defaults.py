"""Every configuration key of bct, with its default and a one-line meaning.

Key names follow the reference implementation wherever a key means the same thing, so its yaml
files port line by line. Roles are "old" (OLD_MODEL) and "new" (NEW_MODEL); see SPEC.md §2-§6.
"""
from yacs.config import CfgNode as CN

_C = CN()

# Experiment tag; the output folder is OUTPUT/<arch of the trained role>/<TAG>.
_C.TAG = "default"
# Root of every result folder.
_C.OUTPUT = "output"
# Base random seed; each rank adds its rank, each loader worker its worker id.
_C.SEED = 1234
# Device: "auto" (cuda when available), "cuda" or "cpu".
_C.DEVICE = "auto"
# Deterministic algorithms and cudnn.benchmark off (bitwise repeatable on CPU).
_C.DETERMINISTIC = False
# Mixed precision (autocast + GradScaler); only ever used on CUDA.
_C.USE_AMP = True
# Keep activations in channels_last memory format (faster convolutions on recent GPUs).
_C.CHANNELS_LAST = False
# CPU threads of torch per process (0 = torch's default, one per core); 1 is often faster on a busy CPU.
_C.NUM_THREADS = 0
# torch.distributed backend: "auto" (nccl on CUDA, gloo on CPU), "nccl" or "gloo".
_C.DIST_BACKEND = "auto"
# Log every PRINT_FREQ iterations.
_C.PRINT_FREQ = 10

# -----------------------------------------------------------------------------
# Settings shared by every model
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# Embedding size (output of Linear(feat_dim -> EMB_DIM, no bias) + BatchNorm1d).
_C.MODEL.EMB_DIM = 256
# Convert BatchNorm layers to SyncBatchNorm when training with several processes.
_C.MODEL.SYNC_BN = False

# The frozen old model (role "old"); TRAIN.TYPE base with TRAIN.ROLE old trains it.
_C.OLD_MODEL = CN()
# torchvision classification architecture, e.g. resnet18, resnet50.
_C.OLD_MODEL.ARCH = "resnet18"
# Initialise the backbone with ImageNet weights (torchvision weights API or PRETRAINED_PATH).
_C.OLD_MODEL.PRETRAINED = True
# Local ImageNet weight file for the backbone (used instead of torchvision's download).
_C.OLD_MODEL.PRETRAINED_PATH = ""
# Number of classes of the old classifier.
_C.OLD_MODEL.NUM_CLASSES = 1000
# Trained old-model checkpoint (read by train_new, extract_feat and test).
_C.OLD_MODEL.MODEL_PATH = ""

# The new model (role "new").
_C.NEW_MODEL = CN()
# torchvision classification architecture of the new model.
_C.NEW_MODEL.ARCH = "resnet18"
# Initialise the backbone with ImageNet weights (never from the old model).
_C.NEW_MODEL.PRETRAINED = True
# Local ImageNet weight file for the backbone.
_C.NEW_MODEL.PRETRAINED_PATH = ""
# Number of classes of the new classifier.
_C.NEW_MODEL.NUM_CLASSES = 1000
# Trained new-model checkpoint (read by test).
_C.NEW_MODEL.MODEL_PATH = ""

# -----------------------------------------------------------------------------
# Classification loss of the trained model
# -----------------------------------------------------------------------------
_C.LOSS = CN()
# Classifier head: "softmax" (linear, no bias), "arcface" or "cosface".
_C.LOSS.TYPE = "softmax"
# Scale of the cosine classifiers.
_C.LOSS.SCALE = 30.0
# Margin of the cosine classifiers.
_C.LOSS.MARGIN = 0.3
# Label smoothing of the cross-entropy (0 = none, the paper's setting).
_C.LOSS.LABEL_SMOOTHING = 0.0

# -----------------------------------------------------------------------------
# Compatibility terms (SPEC.md §5)
# -----------------------------------------------------------------------------
_C.COMP_LOSS = CN()
# Compatibility loss: none, bct, lce, uni_bct, hot_refresh, bct_limit.
_C.COMP_LOSS.TYPE = "none"
# bct_limit: learnable per-class radius r = r_max + (T - r_max) * sigmoid(w) (AdvBCT).
_C.COMP_LOSS.ELASTIC_BOUNDARY = False
# bct_limit without elastic boundary: fixed radius "min" (radius[0], reference), "median" or "max".
_C.COMP_LOSS.RADIUS = "min"
# hot_refresh: temperature of the contrastive logits.
_C.COMP_LOSS.TEMPERATURE = 0.01
# hot_refresh: hardest negatives kept from each negative set.
_C.COMP_LOSS.TOPK_NEG = 10
# Weight of the compatibility term(s).
_C.COMP_LOSS.WEIGHT = 1.0
# uni_bct: ArcFace scale against the old class centres.
_C.COMP_LOSS.ARC_SCALE = 30.0
# uni_bct: ArcFace margin against the old class centres.
_C.COMP_LOSS.ARC_MARGIN = 0.3
# adv_compatible: discriminator calls, "separate" (one per domain, reference) or "joint".
_C.COMP_LOSS.DISC_MODE = "separate"
# adv_compatible: hidden width of the discriminator.
_C.COMP_LOSS.DISC_HIDDEN = 100

# Upgrade loss of the reference; only "base" (no extra term) is defined.
_C.UPGRADE_LOSS = CN()
# Upgrade loss type ("base").
_C.UPGRADE_LOSS.TYPE = "base"
# Upgrade loss weight.
_C.UPGRADE_LOSS.WEIGHT = 1.0

# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------
_C.TRAIN = CN()
# base (cross-entropy only), compatible (+ COMP_LOSS) or adv_compatible (+ discriminator).
_C.TRAIN.TYPE = "base"
# Role of the model trained by TRAIN.TYPE base: "old" (old model) or "new" (oracle).
_C.TRAIN.ROLE = "old"
# Number of epochs.
_C.TRAIN.EPOCHS = 30
# Images per process (per GPU) and iteration.
_C.TRAIN.BATCH_SIZE = 256
# Data-loading worker processes per training process.
_C.TRAIN.NUM_WORKERS = 8
# Square input size (images are squashed to INPUT_SIZE x INPUT_SIZE).
_C.TRAIN.INPUT_SIZE = 224
# Random crop / flip / colour jitter; off reproduces the paper.
_C.TRAIN.AUGMENT = False
# Dataset family (only "landmark").
_C.TRAIN.DATASET_TYPE = "landmark"
# Dataset name (informational: gldv2, synthetic).
_C.TRAIN.DATASET = "gldv2"
# Image root that list paths are relative to.
_C.TRAIN.ROOT = "./data/GLDv2"
# Training list file ("relative/path.jpg label" per line).
_C.TRAIN.FILE_DIR = "./data/GLDv2/gldv2_train_old_30percent_class.txt"
# Skip missing or undecodable images (counted and reported) instead of stopping.
_C.TRAIN.SKIP_BAD_IMAGES = False
# AdvBCT boundary target T of the elastic radius.
_C.TRAIN.THRESHOLD = 0.5
# Save a checkpoint every SAVE_FREQ epochs (and always at the end).
_C.TRAIN.SAVE_FREQ = 1
# Keep only the newest KEEP_LAST epoch checkpoints (0 = keep all; model_final.pth is always kept).
_C.TRAIN.KEEP_LAST = 0
# Evaluate on VAL every VAL_FREQ epochs (0 = never).
_C.TRAIN.VAL_FREQ = 1
# Stop each epoch after this many iterations (0 = full epoch); for smoke runs and benchmarks.
_C.TRAIN.MAX_ITERS = 0
# Clip the global gradient norm to this value (0 = no clipping; the norm is logged either way).
_C.TRAIN.CLIP_GRAD = 0.0

# Optimiser (SPEC.md §3: SGD 0.1 / 0.9 / 5e-4).
_C.TRAIN.OPTIMIZER = CN()
# "sgd" or "adamw".
_C.TRAIN.OPTIMIZER.NAME = "sgd"
# Learning rate.
_C.TRAIN.OPTIMIZER.BASE_LR = 0.1
# SGD momentum.
_C.TRAIN.OPTIMIZER.MOMENTUM = 0.9
# Weight decay.
_C.TRAIN.OPTIMIZER.WEIGHT_DECAY = 5e-4

# Learning-rate schedule (SPEC.md §3: x0.1 at epochs 5, 10, 20).
_C.TRAIN.LR_SCHEDULER = CN()
# "multistep" or "cosine".
_C.TRAIN.LR_SCHEDULER.NAME = "multistep"
# multistep: epochs at which the rate is multiplied by DECAY_RATE.
_C.TRAIN.LR_SCHEDULER.MILESTONES = [5, 10, 20]
# multistep: multiplicative decay.
_C.TRAIN.LR_SCHEDULER.DECAY_RATE = 0.1
# Linear warm-up epochs (both schedules; 0 = none).
_C.TRAIN.LR_SCHEDULER.WARMUP_EPOCHS = 0

# -----------------------------------------------------------------------------
# Image decoding (docs/data_loading.md)
# -----------------------------------------------------------------------------
_C.DATA = CN()
# Training input on the fast path: reduced-size JPEG decoding (draft mode), reducing resize, uint8 tensor transforms.
_C.DATA.FAST_DECODE = True
# Evaluation and extract_feat input on the fast path too (False: bit-for-bit the reference's PIL path).
_C.DATA.EVAL_FAST_DECODE = False
# Where training images are decoded: "cpu" (loader workers) or "cuda" (workers read bytes, nvJPEG decodes batches).
_C.DATA.DECODE_DEVICE = "cpu"
# Where evaluation and extract_feat images are decoded: "cpu" or "cuda".
_C.DATA.EVAL_DECODE_DEVICE = "cpu"

# -----------------------------------------------------------------------------
# Validation during training (never a test set by default)
# -----------------------------------------------------------------------------
_C.VAL = CN()
# Revisited-format validation set name under VAL.ROOT ("" = no validation).
_C.VAL.DATASET = ""
# Root holding VAL.DATASET.
_C.VAL.ROOT = ""

# -----------------------------------------------------------------------------
# Old-class statistics (SPEC.md §4)
# -----------------------------------------------------------------------------
_C.EXTRACT = CN()
# Folder receiving radius.json, angle.json, feats.npy and labels.npy.
_C.EXTRACT.SAVE_DIR = "./output/old_stats/gldv2_class"

# -----------------------------------------------------------------------------
# Evaluation (SPEC.md §6)
# -----------------------------------------------------------------------------
_C.EVAL = CN()
# Dataset family (only "landmark").
_C.EVAL.DATASET_TYPE = "landmark"
# roxford5k, rparis6k or gldv2.
_C.EVAL.DATASET = "roxford5k"
# Name kept from the reference (same meaning as EVAL.DATASET).
_C.EVAL.DATASET_NAME = "roxford5k"
# Root holding <dataset>/ (revisited) or the GLDv2 lists (gldv2).
_C.EVAL.ROOT = "./data/ROxfordParis/"
# Folder holding the GLDv2 retrieval lists (gldv2_gallery_list.txt, ...) for bct.tools.compare and for
# bct.tools.test --datasets (scripts/test.sh passes its root as EVAL.ROOT instead).
_C.EVAL.GLDV2_ROOT = "./data/GLDv2"
# Folder receiving the result JSON files.
_C.EVAL.SAVE_DIR = "./logs/eval/tmp_eval"
# Images per extraction batch.
_C.EVAL.BATCH_SIZE = 64
# Data-loading workers for extraction.
_C.EVAL.NUM_WORKERS = 4
# Test image size; the paper squashes to 224 x 224.
_C.EVAL.INPUT_SIZE = 224
# "squash" (paper) or "aspect" (longer side = INPUT_SIZE, aspect kept).
_C.EVAL.RESIZE = "squash"
# Crop revisited queries to their bounding box (standard revisitop protocol; paper: off).
_C.EVAL.QUERY_CROP = False
# "faiss" (IndexFlatIP on CPU) or "torch" (matmul + topk, on GPU when present).
_C.EVAL.SEARCH_BACKEND = "faiss"
# Rank depth for GLDv2 (mAP@100).
_C.EVAL.TOPK = 100
# Cache gallery features on disk, keyed by checkpoint content and image list.
_C.EVAL.USE_CACHE = True
# Folder of the feature cache.
_C.EVAL.CACHE_DIR = "./output/feature_cache"
# Also report the old model's self-test.
_C.EVAL.OLD_SELF = True
# Skip missing or undecodable images (counted) instead of stopping.
_C.EVAL.SKIP_BAD_IMAGES = False
# Old-class centres and sorted inlier radii written by extract_feat (radius.json).
_C.EVAL.OLD_SAVE_FILE = "./output/old_stats/gldv2_class/radius.json"
# Old-class centres and sorted inlier angles written by extract_feat (angle.json; LCE).
_C.EVAL.OLD_ANGLE_FILE = "./output/old_stats/gldv2_class/angle.json"
# Partial backfill: report mAP of new queries against a gallery re-embedded at these ratios.
_C.EVAL.HOT_REFRESH = False
# Partial-backfill ratios of gallery images re-embedded with the new model.
_C.EVAL.BACKFILL_RATIOS = [0.0, 0.25, 0.5, 0.75, 1.0]
# Seed of the per-image backfill order.
_C.EVAL.BACKFILL_SEED = 0


def get_cfg_defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
