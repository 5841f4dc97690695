"""Every configuration key of bct, with its default and a one-line meaning.

Key names follow the reference implementation wherever a key means the same thing; the few keys of
its yaml files that are not defined here are mapped or ignored on loading (docs/reference.md).
Every key is followed by its rule (range, choices, FLAG or FREE), checked when a config is loaded.
Roles are "old" (OLD_MODEL) and "new" (NEW_MODEL); see docs/method.md and docs/evaluation.md.
"""
from yacs.config import CfgNode as CN

from bct.config.rules import FLAG, FREE, NONEMPTY, above, at_least, between, each, either, one_of

_C = CN()
# What each key may be beyond its type, declared on the line after its default (bct/config/rules.py).
RULES = {}

# Experiment tag; the output folder is OUTPUT/<arch of the trained role>/<TAG>.
_C.TAG = "default"
RULES["TAG"] = NONEMPTY
# Root of every result folder.
_C.OUTPUT = "output"
RULES["OUTPUT"] = NONEMPTY
# Base random seed; each rank adds its rank, each loader worker its worker id.
_C.SEED = 1234
RULES["SEED"] = at_least(0)
# Device: "auto" (cuda when available), "cuda" or "cpu".
_C.DEVICE = "auto"
RULES["DEVICE"] = one_of("auto", "cuda", "cpu")
# Deterministic algorithms and cudnn.benchmark off (bitwise repeatable on CPU).
_C.DETERMINISTIC = False
RULES["DETERMINISTIC"] = FLAG
# Mixed precision (autocast + GradScaler); only ever used on CUDA.
_C.USE_AMP = True
RULES["USE_AMP"] = FLAG
# Keep activations in channels_last memory format (faster convolutions on recent GPUs).
_C.CHANNELS_LAST = False
RULES["CHANNELS_LAST"] = FLAG
# CPU threads of torch per process (0 = torch's default, one per core); 1 is often faster on a busy CPU.
_C.NUM_THREADS = 0
RULES["NUM_THREADS"] = at_least(0)
# torch.distributed backend: "auto" (nccl on CUDA, gloo on CPU), "nccl" or "gloo".
_C.DIST_BACKEND = "auto"
RULES["DIST_BACKEND"] = one_of("auto", "nccl", "gloo")
# Log every PRINT_FREQ iterations.
_C.PRINT_FREQ = 10
RULES["PRINT_FREQ"] = at_least(1)
# Python modules imported before the loss registry is read, so a loss registered in user code
# (docs/adding_a_method.md) can be named by COMP_LOSS.TYPE or COMP_LOSS.EXTRA_TERMS.
_C.MODULES = []
RULES["MODULES"] = each(NONEMPTY)

# -----------------------------------------------------------------------------
# The compatibility method of a new model (set by bct.config.methods.load_method_cfg)
# -----------------------------------------------------------------------------
_C.METHOD = CN()
# Name of the method: the file bct/methods/<NAME>.yml ("" when the config was not made from one).
_C.METHOD.NAME = ""
RULES["METHOD.NAME"] = FREE
# Title of the method in tables and plots (bct/methods/<NAME>.yml sets it).
_C.METHOD.TITLE = ""
RULES["METHOD.TITLE"] = FREE
# Keys whose values the method's own old model takes from the method's config (e.g. the fixed d-Simplex
# classifier of 'simplex', which changes how the old model is trained too); empty: the setting's shared
# old model. A comparison or a chain then trains that old model for the method (docs/method.md).
_C.METHOD.OLD_MODEL_KEYS = []
RULES["METHOD.OLD_MODEL_KEYS"] = each(NONEMPTY)
# FastFill: after the new model, train a transformation old embedding -> new embedding with an uncertainty
# (FASTFILL.*); the method's cross-test then searches the transformed old gallery, and its backfill
# curves compare the orders random, distinct and uncertainty (docs/method.md).
_C.METHOD.TRANSFORMATION = False
RULES["METHOD.TRANSFORMATION"] = FLAG

# -----------------------------------------------------------------------------
# Settings shared by every model
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# Embedding size (output of Linear(feat_dim -> EMB_DIM, no bias) + BatchNorm1d).
_C.MODEL.EMB_DIM = 256
RULES["MODEL.EMB_DIM"] = at_least(1)
# Convert BatchNorm layers to SyncBatchNorm when training with several processes.
_C.MODEL.SYNC_BN = False
RULES["MODEL.SYNC_BN"] = FLAG

# The frozen old model (role "old"); TRAIN.TYPE base with TRAIN.ROLE old trains it.
_C.OLD_MODEL = CN()
# torchvision classification architecture, e.g. resnet18, resnet50.
_C.OLD_MODEL.ARCH = "resnet18"
RULES["OLD_MODEL.ARCH"] = NONEMPTY
# Initialise the backbone with ImageNet weights (torchvision weights API or PRETRAINED_PATH).
_C.OLD_MODEL.PRETRAINED = True
RULES["OLD_MODEL.PRETRAINED"] = FLAG
# Local ImageNet weight file for the backbone (used instead of torchvision's download).
_C.OLD_MODEL.PRETRAINED_PATH = ""
RULES["OLD_MODEL.PRETRAINED_PATH"] = FREE
# Number of classes of the old classifier.
_C.OLD_MODEL.NUM_CLASSES = 1000
RULES["OLD_MODEL.NUM_CLASSES"] = at_least(1)
# Trained old-model checkpoint (read by train_new, extract_feat and test).
_C.OLD_MODEL.MODEL_PATH = ""
RULES["OLD_MODEL.MODEL_PATH"] = FREE

# The new model (role "new").
_C.NEW_MODEL = CN()
# torchvision classification architecture of the new model.
_C.NEW_MODEL.ARCH = "resnet18"
RULES["NEW_MODEL.ARCH"] = NONEMPTY
# Initialise the backbone with ImageNet weights (never from the old model).
_C.NEW_MODEL.PRETRAINED = True
RULES["NEW_MODEL.PRETRAINED"] = FLAG
# Local ImageNet weight file for the backbone.
_C.NEW_MODEL.PRETRAINED_PATH = ""
RULES["NEW_MODEL.PRETRAINED_PATH"] = FREE
# Number of classes of the new classifier.
_C.NEW_MODEL.NUM_CLASSES = 1000
RULES["NEW_MODEL.NUM_CLASSES"] = at_least(1)
# Trained new-model checkpoint (read by test).
_C.NEW_MODEL.MODEL_PATH = ""
RULES["NEW_MODEL.MODEL_PATH"] = FREE
# BT2: dimensions the new embedding gains beyond MODEL.EMB_DIM, through a learnable orthonormal basis
# transformation; its first MODEL.EMB_DIM dimensions are the old-compatible part (0: none).
_C.NEW_MODEL.EXTRA_DIMS = 0
RULES["NEW_MODEL.EXTRA_DIMS"] = at_least(0)

# -----------------------------------------------------------------------------
# Classification loss of the trained model
# -----------------------------------------------------------------------------
_C.LOSS = CN()
# Classifier head: "softmax" (linear, no bias), "arcface", "cosface" or "simplex" (fixed d-Simplex
# prototypes, not learned: stationary representations).
_C.LOSS.TYPE = "softmax"
RULES["LOSS.TYPE"] = one_of("softmax", "arcface", "cosface", "simplex")
# simplex: number of fixed prototypes, the classes of every generation to come (0: NEW_MODEL.NUM_CLASSES);
# a regular simplex of K vertices needs MODEL.EMB_DIM >= K - 1.
_C.LOSS.SIMPLEX_CLASSES = 0
RULES["LOSS.SIMPLEX_CLASSES"] = at_least(0)
# Scale of the cosine classifiers.
_C.LOSS.SCALE = 30.0
RULES["LOSS.SCALE"] = above(0.0)
# Margin of the cosine classifiers.
_C.LOSS.MARGIN = 0.3
RULES["LOSS.MARGIN"] = between(0.0, 1.0)
# Label smoothing of the cross-entropy (0 = none, the paper's setting).
_C.LOSS.LABEL_SMOOTHING = 0.0
RULES["LOSS.LABEL_SMOOTHING"] = between(0.0, 1.0, hi_open=True)

# -----------------------------------------------------------------------------
# Compatibility terms (docs/method.md)
# -----------------------------------------------------------------------------
_C.COMP_LOSS = CN()
# Compatibility loss: a name in bct.losses.registry (built in: none, bct, lce, uni_bct, hot_refresh,
# bct_limit); the loader checks it against the registry once MODULES are imported.
_C.COMP_LOSS.TYPE = "none"
RULES["COMP_LOSS.TYPE"] = NONEMPTY
# Further registered terms added to COMP_LOSS.TYPE's, e.g. ['adversarial'] (AdvBCT's discriminator;
# TRAIN.TYPE adv_compatible, the reference's spelling, adds it too).
_C.COMP_LOSS.EXTRA_TERMS = []
RULES["COMP_LOSS.EXTRA_TERMS"] = each(NONEMPTY)
# bct_limit: learnable per-class radius r = r_max + (T - r_max) * sigmoid(w) (AdvBCT).
_C.COMP_LOSS.ELASTIC_BOUNDARY = False
RULES["COMP_LOSS.ELASTIC_BOUNDARY"] = FLAG
# bct_limit without elastic boundary: fixed radius "min" (radius[0], reference), "median" or "max".
_C.COMP_LOSS.RADIUS = "min"
RULES["COMP_LOSS.RADIUS"] = one_of("min", "median", "max")
# bct_limit: boundary target T of the elastic radius (the reference's TRAIN.THRESHOLD).
_C.COMP_LOSS.THRESHOLD = 0.5
RULES["COMP_LOSS.THRESHOLD"] = between(0.0, 2.0, lo_open=True)
# Old-class centres and sorted inlier radii written by extract_feat (radius.json; read by the terms
# with NEEDS_STATS; the reference's EVAL.OLD_SAVE_FILE).
_C.COMP_LOSS.RADIUS_FILE = "./output/old_stats/gldv2_class/radius.json"
RULES["COMP_LOSS.RADIUS_FILE"] = FREE
# Old-class centres and sorted inlier angles written by extract_feat (angle.json; read by the terms
# with NEEDS_ANGLES, e.g. lce; the reference's EVAL.OLD_ANGLE_FILE).
_C.COMP_LOSS.ANGLE_FILE = "./output/old_stats/gldv2_class/angle.json"
RULES["COMP_LOSS.ANGLE_FILE"] = FREE
# hot_refresh: temperature of the contrastive logits.
_C.COMP_LOSS.TEMPERATURE = 0.01
RULES["COMP_LOSS.TEMPERATURE"] = above(0.0)
# hot_refresh: hardest negatives kept from each negative set.
_C.COMP_LOSS.TOPK_NEG = 10
RULES["COMP_LOSS.TOPK_NEG"] = at_least(1)
# Weight of the compatibility term(s).
_C.COMP_LOSS.WEIGHT = 1.0
RULES["COMP_LOSS.WEIGHT"] = at_least(0.0)
# uni_bct: ArcFace scale against the old class centres.
_C.COMP_LOSS.ARC_SCALE = 30.0
RULES["COMP_LOSS.ARC_SCALE"] = above(0.0)
# uni_bct: ArcFace margin against the old class centres.
_C.COMP_LOSS.ARC_MARGIN = 0.3
RULES["COMP_LOSS.ARC_MARGIN"] = between(0.0, 1.0)
# adversarial term: discriminator calls, "separate" (one per domain, reference) or "joint".
_C.COMP_LOSS.DISC_MODE = "separate"
RULES["COMP_LOSS.DISC_MODE"] = one_of("separate", "joint")
# adversarial term: hidden width of the discriminator.
_C.COMP_LOSS.DISC_HIDDEN = 100
RULES["COMP_LOSS.DISC_HIDDEN"] = at_least(1)

# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------
_C.TRAIN = CN()
# base (cross-entropy only), compatible (+ COMP_LOSS terms) or adv_compatible (compatible with the
# 'adversarial' term added to COMP_LOSS.EXTRA_TERMS; the reference's name for AdvBCT's training).
_C.TRAIN.TYPE = "base"
RULES["TRAIN.TYPE"] = one_of("base", "compatible", "adv_compatible")
# Role of the model trained by TRAIN.TYPE base: "old" (old model) or "new" (oracle).
_C.TRAIN.ROLE = "old"
RULES["TRAIN.ROLE"] = one_of("old", "new")
# Number of epochs.
_C.TRAIN.EPOCHS = 30
RULES["TRAIN.EPOCHS"] = at_least(1)
# Images per process (per GPU) and iteration.
_C.TRAIN.BATCH_SIZE = 256
RULES["TRAIN.BATCH_SIZE"] = at_least(2)
# Data-loading worker processes per training process.
_C.TRAIN.NUM_WORKERS = 8
RULES["TRAIN.NUM_WORKERS"] = at_least(0)
# Square input size (images are squashed to INPUT_SIZE x INPUT_SIZE).
_C.TRAIN.INPUT_SIZE = 224
RULES["TRAIN.INPUT_SIZE"] = at_least(1)
# Random crop / flip / colour jitter; off reproduces the paper.
_C.TRAIN.AUGMENT = False
RULES["TRAIN.AUGMENT"] = FLAG
# Keep each training image's old embedding after its first computation and skip the old forward pass
# once a batch's embeddings are all kept (compatible training; off with AUGMENT, where they change).
# Host memory: images x EMB_DIM x 4 bytes (1.6 GB for GLDv2's 1.58 M images at 256).
_C.TRAIN.CACHE_OLD_FEATURES = True
RULES["TRAIN.CACHE_OLD_FEATURES"] = FLAG
# Dataset name (informational: gldv2, synthetic).
_C.TRAIN.DATASET = "gldv2"
RULES["TRAIN.DATASET"] = FREE
# Image root that list paths are relative to.
_C.TRAIN.ROOT = "./data/GLDv2"
RULES["TRAIN.ROOT"] = FREE
# Training list file ("relative/path.jpg label" per line; the reference's TRAIN.FILE_DIR).
_C.TRAIN.LIST_FILE = "./data/GLDv2/gldv2_train_old_30percent_class.txt"
RULES["TRAIN.LIST_FILE"] = FREE
# Skip missing or undecodable images (counted and reported) instead of stopping.
_C.TRAIN.SKIP_BAD_IMAGES = False
RULES["TRAIN.SKIP_BAD_IMAGES"] = FLAG
# Save a checkpoint every SAVE_FREQ epochs (and always at the end).
_C.TRAIN.SAVE_FREQ = 1
RULES["TRAIN.SAVE_FREQ"] = at_least(1)
# Keep only the newest KEEP_LAST epoch checkpoints (0 = keep all; model_final.pth is always kept).
_C.TRAIN.KEEP_LAST = 0
RULES["TRAIN.KEEP_LAST"] = at_least(0)
# Evaluate on VAL every VAL_FREQ epochs (0 = never).
_C.TRAIN.VAL_FREQ = 1
RULES["TRAIN.VAL_FREQ"] = at_least(0)
# Stop each epoch after this many iterations (0 = full epoch); for smoke runs and benchmarks.
_C.TRAIN.MAX_ITERS = 0
RULES["TRAIN.MAX_ITERS"] = at_least(0)
# With --resume: accept a changed TRAIN.OPTIMIZER.BASE_LR and apply it to the restored optimiser (the
# schedule's factors go on from where they were), e.g. to continue a diverged run at a lower rate.
_C.TRAIN.RESUME_WITH_NEW_LR = False
RULES["TRAIN.RESUME_WITH_NEW_LR"] = FLAG
# Clip the global gradient norm to this value (0 = no clipping; the norm is logged either way).
_C.TRAIN.CLIP_GRAD = 0.0
RULES["TRAIN.CLIP_GRAD"] = at_least(0.0)

# Optimiser (docs/method.md: SGD 0.1 / 0.9 / 5e-4).
_C.TRAIN.OPTIMIZER = CN()
# "sgd" or "adamw".
_C.TRAIN.OPTIMIZER.NAME = "sgd"
RULES["TRAIN.OPTIMIZER.NAME"] = one_of("sgd", "adamw")
# Learning rate.
_C.TRAIN.OPTIMIZER.BASE_LR = 0.1
RULES["TRAIN.OPTIMIZER.BASE_LR"] = above(0.0)
# SGD momentum.
_C.TRAIN.OPTIMIZER.MOMENTUM = 0.9
RULES["TRAIN.OPTIMIZER.MOMENTUM"] = between(0.0, 1.0, hi_open=True)
# Weight decay.
_C.TRAIN.OPTIMIZER.WEIGHT_DECAY = 5e-4
RULES["TRAIN.OPTIMIZER.WEIGHT_DECAY"] = at_least(0.0)

# Learning-rate schedule (docs/method.md: x0.1 at epochs 5, 10, 20).
_C.TRAIN.LR_SCHEDULER = CN()
# "multistep" or "cosine".
_C.TRAIN.LR_SCHEDULER.NAME = "multistep"
RULES["TRAIN.LR_SCHEDULER.NAME"] = one_of("multistep", "cosine")
# multistep: epochs at which the rate is multiplied by DECAY_RATE; or fractions of TRAIN.EPOCHS in (0, 1)
# (epoch round(f * EPOCHS), at least 1), so that the schedule scales with EPOCHS.
_C.TRAIN.LR_SCHEDULER.MILESTONES = [5, 10, 20]
RULES["TRAIN.LR_SCHEDULER.MILESTONES"] = either(each(at_least(1), increasing=True),
                                                each(between(0.0, 1.0, lo_open=True, hi_open=True), increasing=True),
                                                "or each a fraction of TRAIN.EPOCHS in (0, 1), increasing")
# multistep: multiplicative decay.
_C.TRAIN.LR_SCHEDULER.DECAY_RATE = 0.1
RULES["TRAIN.LR_SCHEDULER.DECAY_RATE"] = between(0.0, 1.0, lo_open=True)
# Linear warm-up epochs (both schedules; 0 = none).
_C.TRAIN.LR_SCHEDULER.WARMUP_EPOCHS = 0
RULES["TRAIN.LR_SCHEDULER.WARMUP_EPOCHS"] = at_least(0)

# -----------------------------------------------------------------------------
# FastFill's transformation (docs/method.md)
# -----------------------------------------------------------------------------
# FastFill: the transformation old embedding -> (new embedding, uncertainty), trained after the new model
# on the embeddings of the new training list (bct.pipeline.fastfill, docs/method.md).
_C.FASTFILL = CN()
# Hidden width of the transformation's two-layer MLP.
_C.FASTFILL.HIDDEN = 512
RULES["FASTFILL.HIDDEN"] = at_least(1)
# Passes over the training embeddings.
_C.FASTFILL.EPOCHS = 40
RULES["FASTFILL.EPOCHS"] = at_least(1)
# Adam learning rate.
_C.FASTFILL.BASE_LR = 0.001
RULES["FASTFILL.BASE_LR"] = above(0.0)
# Weight of the discriminative term (the new model's frozen classifier on the transformed embedding).
_C.FASTFILL.DISC_WEIGHT = 1.0
RULES["FASTFILL.DISC_WEIGHT"] = at_least(0.0)

# -----------------------------------------------------------------------------
# Image decoding (docs/data_loading.md)
# -----------------------------------------------------------------------------
_C.DATA = CN()
# Training input on the fast path: reduced-size JPEG decoding (draft mode), reducing resize, uint8 tensor transforms.
_C.DATA.FAST_DECODE = True
RULES["DATA.FAST_DECODE"] = FLAG
# Evaluation and extract_feat input on the fast path too (False: bit-for-bit the reference's PIL path).
_C.DATA.EVAL_FAST_DECODE = False
RULES["DATA.EVAL_FAST_DECODE"] = FLAG
# Where training images are decoded: "cpu" (loader workers) or "cuda" (workers read bytes, nvJPEG decodes batches).
_C.DATA.DECODE_DEVICE = "cpu"
RULES["DATA.DECODE_DEVICE"] = one_of("cpu", "cuda")
# Where evaluation and extract_feat images are decoded: "cpu" or "cuda".
_C.DATA.EVAL_DECODE_DEVICE = "cpu"
RULES["DATA.EVAL_DECODE_DEVICE"] = one_of("cpu", "cuda")

# -----------------------------------------------------------------------------
# Validation during training (never a test set by default)
# -----------------------------------------------------------------------------
_C.VAL = CN()
# Revisited-format validation set name under VAL.ROOT ("" = no validation).
_C.VAL.DATASET = ""
RULES["VAL.DATASET"] = FREE
# Root holding VAL.DATASET.
_C.VAL.ROOT = ""
RULES["VAL.ROOT"] = FREE

# -----------------------------------------------------------------------------
# Old-class statistics (docs/method.md)
# -----------------------------------------------------------------------------
_C.EXTRACT = CN()
# Folder receiving radius.json, angle.json, feats.npy and labels.npy.
_C.EXTRACT.SAVE_DIR = "./output/old_stats/gldv2_class"
RULES["EXTRACT.SAVE_DIR"] = NONEMPTY

# -----------------------------------------------------------------------------
# Evaluation (docs/evaluation.md)
# -----------------------------------------------------------------------------
_C.EVAL = CN()
# roxford5k, rparis6k or gldv2.
_C.EVAL.DATASET = "roxford5k"
RULES["EVAL.DATASET"] = NONEMPTY
# Root holding <dataset>/ (revisited) or the GLDv2 lists (gldv2).
_C.EVAL.ROOT = "./data/ROxfordParis/"
RULES["EVAL.ROOT"] = FREE
# Folder holding the GLDv2 retrieval lists (gldv2_gallery_list.txt, ...) for bct.tools.compare and for
# bct.tools.test --datasets (scripts/test.sh passes its root as EVAL.ROOT instead).
_C.EVAL.GLDV2_ROOT = "./data/GLDv2"
RULES["EVAL.GLDV2_ROOT"] = FREE
# Folder receiving the result JSON files.
_C.EVAL.SAVE_DIR = "./output/eval"
RULES["EVAL.SAVE_DIR"] = NONEMPTY
# Images per extraction batch.
_C.EVAL.BATCH_SIZE = 64
RULES["EVAL.BATCH_SIZE"] = at_least(1)
# Data-loading workers for extraction.
_C.EVAL.NUM_WORKERS = 4
RULES["EVAL.NUM_WORKERS"] = at_least(0)
# Test image size; the paper squashes to 224 x 224.
_C.EVAL.INPUT_SIZE = 224
RULES["EVAL.INPUT_SIZE"] = at_least(1)
# "squash" (paper) or "aspect" (longer side = INPUT_SIZE, aspect kept).
_C.EVAL.RESIZE = "squash"
RULES["EVAL.RESIZE"] = one_of("squash", "aspect")
# Crop revisited queries to their bounding box (standard revisitop protocol; paper: off).
_C.EVAL.QUERY_CROP = False
RULES["EVAL.QUERY_CROP"] = FLAG
# "faiss" (IndexFlatIP on CPU) or "torch" (matmul + topk, on GPU when present).
_C.EVAL.SEARCH_BACKEND = "faiss"
RULES["EVAL.SEARCH_BACKEND"] = one_of("faiss", "torch")
# Rank depth for GLDv2 (mAP@100).
_C.EVAL.TOPK = 100
RULES["EVAL.TOPK"] = at_least(1)
# Cache gallery features on disk, keyed by checkpoint content and image list.
_C.EVAL.USE_CACHE = True
RULES["EVAL.USE_CACHE"] = FLAG
# Folder of the feature cache.
_C.EVAL.CACHE_DIR = "./output/feature_cache"
RULES["EVAL.CACHE_DIR"] = NONEMPTY
# Also report the old model's self-test.
_C.EVAL.OLD_SELF = True
RULES["EVAL.OLD_SELF"] = FLAG
# Skip missing or undecodable images (counted) instead of stopping.
_C.EVAL.SKIP_BAD_IMAGES = False
RULES["EVAL.SKIP_BAD_IMAGES"] = FLAG
# Partial backfill: report mAP of new queries against a gallery re-embedded at these ratios (the
# reference's EVAL.HOT_REFRESH; unrelated to the hot_refresh method).
_C.EVAL.PARTIAL_BACKFILL = False
RULES["EVAL.PARTIAL_BACKFILL"] = FLAG
# Partial-backfill ratios of gallery images re-embedded with the new model.
_C.EVAL.BACKFILL_RATIOS = [0.0, 0.25, 0.5, 0.75, 1.0]
RULES["EVAL.BACKFILL_RATIOS"] = each(between(0.0, 1.0))
# Seed of the per-image backfill order.
_C.EVAL.BACKFILL_SEED = 0
RULES["EVAL.BACKFILL_SEED"] = at_least(0)


def get_cfg_defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
