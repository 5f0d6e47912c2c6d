#pragma once

// The core library in one include: data, layers, ops, models, losses, the
// Trainer, evaluation, checkpoints, inference and export, and the extension
// points (the model registry, registry/models.h; the data-set registry,
// data/registry.h). Not included, as they bring more than the core: whole
// runs with data-parallel training over c10d (capsnet/recipes/run.h), the
// HTTP server (capsnet/serve/server.h) and figures (capsnet/viz/figure.h,
// cairo). Pictures: capsnet/image/image.h.
#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/data/registry.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/inference/export.h"
#include "capsnet/inference/inference.h"
#include "capsnet/registry/models.h"
#include "capsnet/registry/options.h"
#include "capsnet/engine/policies.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/engine/step.h"
#include "capsnet/registry/task.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/image/image.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/io/enum_names.h"
#include "capsnet/layers/digit_capsules.h"
#include "capsnet/layers/primary_capsules.h"
#include "capsnet/losses/capsule_losses.h"
#include "capsnet/losses/objective.h"
#include "capsnet/model/capsnet.h"
#include "capsnet/model/decoder.h"
#include "capsnet/ops/cpu_features.h"
#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/fused_routing.h"
#include "capsnet/ops/im2col_conv.h"
#include "capsnet/ops/squash.h"
#include "capsnet/version.h"
