// The one header users include.
#pragma once

#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/data.h"
#include "frontend/nn/block.h"
#include "frontend/nn/init.h"
#include "frontend/nn/layers.h"
#include "frontend/nn/loss.h"
#include "frontend/nn/sequence.h"
#include "frontend/nn/parameter.h"
#include "frontend/nn/train_step.h"
#include "frontend/ops.h"
#include "frontend/optim.h"
#include "frontend/print.h"
#include "frontend/tensor.h"
#include "frontend/trace.h"
#include "ir/error.h"
