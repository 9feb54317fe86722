// The evaluator's classifier (ebm_eval, train.eval): a small conv net of the energy net's family with a
// K = 10 output head (model.outputs), trained once per data set with softmax cross-entropy on its labelled
// training split, and cached beside the data. Its class probabilities give the Inception Score and its
// penultimate features (the dense layer's input) the Fréchet distance (host/eval/eval_metrics.hpp).
//
// Recipe (ClassifierRecipe below; a cache trained by another recipe is trained anew): model.channels
// {32, 64, 128, 128}, kernel 3, stride 2, swish, Dense(512 → 10); Adam (lr 1e-3, β 0.9/0.999, ε 1e-7) with a
// cosine decay to 0 over `images` / `batch` steps of batch 64, each image shifted by a random
// (dy, dx) ∈ [−2, 2]² (the −1 border fills in); parameters from init_params(seed 1234); batches drawn
// by std::mt19937_64(1234). About a minute on 2 cores; seconds on a GPU.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"

namespace ebm {

struct ClassifierRecipe {
  std::vector<int> channels{32, 64, 128, 128};
  int64_t images = 240000;  // images seen in training (~27 epochs of 9,003; 4 of 60,000)
  int batch = 64;
  double lr = 1e-3;
  int shift = 2;            // random translation, pixels
  uint64_t seed = 1234;
  int version = 1;          // changed with the code that trains it
};

struct ClassifierInfo {
  std::string dir;            // where it is cached
  double test_accuracy = 0;   // fraction of the data set's test split classified right
  int64_t n_test = 0, n_train = 0;
  double seconds = 0;         // its training time
  std::string backend;        // the backend that trained it ("cpu" or "cuda")
  bool trained_now = false;
};

struct Classifier {
  Model model;  // config.json + model.safetensors of the cache folder (model.outputs = 10)
  ClassifierInfo info;
};

// The classifier's own config for data set `data` (its net, data, batch).
Config classifier_config(const DataConfig& data, const ClassifierRecipe& recipe = {});

// Where the classifier of `data` is cached: <data.dir>/classifier-<pad_to>[-<recipe hash>]/ where that folder
// can be written, else $XDG_CACHE_HOME (or ~/.cache)/ebm_engine/<dataset>-<fingerprint>-classifier-<pad_to>[...]/.
// The default recipe's folder has no hash: another recipe never replaces it. Both places are looked in.
std::string classifier_dir(const DataConfig& data, uint64_t train_fingerprint, const ClassifierRecipe& recipe = {});

// The cached classifier of `data`'s set, or — when there is none, or it was trained on other images or by
// another recipe, or is damaged (said on `log`) — one trained now on backend `backend` (auto | cpu | cuda) and,
// with `save`, cached; what it does is said on `log`, with progress. UserError when the data set has no label
// files, or when it must be cached and neither place can be written. Training is deterministic on the CPU, so
// ranks that each train it hold the same classifier; one of them saves it.
Classifier load_or_train_classifier(const DataConfig& data, const std::string& backend, std::ostream& log,
                                    const ClassifierRecipe& recipe = {}, bool save = true);

// p(y|x) [n][K] (softmax of the K outputs) and, when `features` is non-null, the penultimate features
// [n][D] of images x [n,C,H,W] under `classifier` (a backend holding its weights).
void classify(Backend& classifier, const Tensor& x, std::vector<float>& probs, std::vector<float>* features);

}  // namespace ebm
