"""A model in the reference implementation's layout, built here from the same pieces, and saved the
way the reference saves its checkpoints (epoch, arch, model, best accuracies as numpy numbers,
optimizer, grad_scaler and a yacs CfgNode config)."""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torchvision
from yacs.config import CfgNode


class ElasticWeights(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n).uniform_(-1, 1))


class ReferenceModel(nn.Module):
    """convnet (torchvision ResNet without fc) -> projection_dim (no bias) -> bn; projection_cls;
    optionally the discriminator and the elastic boundary weights. Eval forward = the embedding."""

    def __init__(self, arch="resnet18", num_classes=7, emb_dim=256, adversarial=False, eboundary=False):
        super().__init__()
        self.convnet = torchvision.models.get_model(arch, weights=None)
        feat_dim = self.convnet.fc.in_features
        self.convnet.fc = nn.Identity()
        self.feat_dim = feat_dim
        self.projection_dim = nn.Linear(feat_dim, emb_dim, bias=False)
        self.bn = nn.BatchNorm1d(emb_dim)
        self.projection_cls = nn.Linear(emb_dim, num_classes, bias=False)
        if adversarial:
            self.discriminator = nn.Sequential(OrderedDict([
                ("d_fc1", nn.Linear(emb_dim, 100)), ("d_bn1", nn.BatchNorm1d(100)), ("d_relu1", nn.ReLU(True)),
                ("d_fc2", nn.Linear(100, 2)), ("d_softmax", nn.LogSoftmax(dim=1))]))
        if eboundary:
            self.eboundary = ElasticWeights(num_classes)
        gen = torch.Generator().manual_seed(0)
        for m in self.modules():  # non-trivial running statistics, so eval mode matters
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)

    def forward(self, x):
        return self.bn(self.projection_dim(self.convnet(x).view(-1, self.feat_dim)))


def reference_config(train_type="adv_compatible", arch="resnet18"):
    cfg = CfgNode()
    cfg.MODEL = CfgNode({"ARCH": f"{arch}_{arch}", "NUM_CLASSES": 81313, "EMB_DIM": 256})
    cfg.OLD_MODEL = CfgNode({"ARCH": arch, "PRETRAINED_PATH": "./output/final_model/old.pth.tar",
                             "NUM_CLASSES": 24393})
    cfg.TRAIN = CfgNode({"TYPE": train_type, "EPOCHS": 30, "THRESHOLD": 1.0})
    cfg.TRAIN.OPTIMIZER = CfgNode({"NAME": "sgd", "BETAS": (0.9, 0.999)})
    cfg.LOSS = CfgNode({"TYPE": "softmax", "SCALE": 30.0, "MARGIN": 0.3})
    cfg.EVAL = CfgNode({"OLD_SAVE_FILE": "./preprocess/center/gldv2_470369_meta_radius_centernorm.json"})
    cfg.freeze()
    return cfg


def save_like_reference(model: ReferenceModel, path, module_prefix=False, train_type="adv_compatible", config=None):
    """torch.save the dict the reference's trainer writes (after one SGD step, so momentum exists)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    state = model.state_dict()
    if module_prefix:
        state = OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save({
        "epoch": 10,
        "arch": "DistributedDataParallel",
        "model": state,
        "best_acc_cross": np.float64(0.5427),
        "best_acc_self": np.float32(0.6385),
        "optimizer": opt.state_dict(),
        "grad_scaler": torch.amp.GradScaler("cpu").state_dict(),
        "config": reference_config(train_type) if config is None else config,
    }, path)
    return path
