#pragma once

// Everything a program embedding capsnet needs, in one include.
#include "capsnet/data/dataset.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/options.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/layers/digit_capsules.h"
#include "capsnet/layers/primary_capsules.h"
#include "capsnet/losses/capsule_losses.h"
#include "capsnet/model/capsnet.h"
#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/squash.h"
