// Trains the seed chapter's MLP on a synthetic, separable 10-class task and
// prints the loss falling. Usage: train_mlp [steps] [sgd|adam]
#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "examples/seed_models.h"
#include "examples/training.h"

int main(int argc, char** argv) {
  bj::examples::TrainOptions o;
  o.steps = argc > 1 ? std::atoi(argv[1]) : 200;
  o.optimizer = argc > 2 ? argv[2] : "sgd";
  o.lr = o.optimizer == "adam" ? 0.01 : 0.1;
  o.log_every = 20;
  auto task = bj::examples::make_classification_task(512, 20, 10, 1);
  bj::manual_seed(0);
  bj::examples::MLP net;
  net.initialize(bj::init::xavier());
  fmt::print("training MLP on {} points, {} classes, {} steps of {} (lr {})\n", task.x.shape()[0], task.classes,
             o.steps, o.optimizer, o.lr);
  auto r = bj::examples::train_classifier(net, task, o, [](int step, double loss) {
    fmt::print("step {:4d}  loss {:.4f}\n", step, loss);
  });
  fmt::print("final loss {:.4f}, training accuracy {:.1f}%\n", r.final_loss, 100 * r.accuracy);
}
