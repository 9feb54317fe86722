#include "host/eval/classifier.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <ostream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/augment.hpp"
#include "engine/error.hpp"
#include "engine/net.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/io/crc32.hpp"
#include "host/io/dataset.hpp"

namespace ebm {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kClasses = 10;

nlohmann::json recipe_json(const ClassifierRecipe& r) {
  return {{"channels", r.channels}, {"images", r.images}, {"batch", r.batch}, {"lr", r.lr},
          {"shift", r.shift},       {"seed", r.seed},     {"version", r.version}};
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool writable_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  return !ec && ::access(dir.c_str(), W_OK) == 0;
}

// Softmax of each row of f [n][K] into p.
void softmax_rows(const std::vector<float>& f, int64_t n, int k, std::vector<float>& p) {
  p.resize(size_t(n) * k);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = f.data() + i * k;
    const double m = *std::max_element(r, r + k);
    double s = 0;
    for (int j = 0; j < k; ++j) s += std::exp(double(r[j]) - m);
    for (int j = 0; j < k; ++j) p[size_t(i * k + j)] = float(std::exp(double(r[j]) - m) / s);
  }
}

double accuracy(Backend& be, const Tensor& x, const std::vector<uint8_t>& labels) {
  std::vector<float> p;
  classify(be, x, p, nullptr);
  int64_t right = 0;
  const int64_t n = int64_t(labels.size());
  for (int64_t i = 0; i < n; ++i) {
    const float* r = p.data() + i * kClasses;
    right += int64_t(std::max_element(r, r + kClasses) - r) == int64_t(labels[size_t(i)]);
  }
  return n > 0 ? double(right) / double(n) : 0.0;
}

Tensor rows_of(const Tensor& x, int64_t first, int64_t count) {
  const int64_t img = x.numel() / x.dim(0);
  Tensor out({count, x.dim(1), x.dim(2), x.dim(3)});
  std::copy_n(x.ptr() + first * img, count * img, out.ptr());
  return out;
}

// The cache in `dir`, when it is there, from this recipe, for these training images, and whole. `why` says
// why a cache that is there is not taken (empty when there is none).
bool load_cached(const fs::path& dir, uint64_t fingerprint, int64_t n_train, const ClassifierRecipe& recipe,
                 Classifier& c, std::string& why) {
  why.clear();
  std::error_code ec;
  const fs::path info = dir / "classifier.json";
  if (!fs::exists(dir, ec)) return false;
  try {
    std::ifstream f(info);
    if (!f) throw std::runtime_error("no classifier.json");
    const json j = json::parse(f);
    if (j.at("recipe") != recipe_json(recipe)) {
      why = "trained by another recipe";
      return false;
    }
    if (j.at("train_fingerprint").get<std::string>() != hex64(fingerprint) || j.at("n_train").get<int64_t>() != n_train) {
      why = "trained on other images";
      return false;
    }
    c.model = load_model(dir.string());
    if (c.model.net.outputs != kClasses || c.model.config.model.channels != recipe.channels)
      throw std::runtime_error("its network is not the recipe's (model.outputs " + std::to_string(c.model.net.outputs) +
                               ")");
    for (float v : c.model.params)
      if (!std::isfinite(v)) throw std::runtime_error("its weights hold NaN or infinity");
    c.info.dir = dir.string();
    c.info.test_accuracy = j.at("test_accuracy").get<double>();
    c.info.n_test = j.at("n_test").get<int64_t>();
    c.info.n_train = n_train;
    c.info.seconds = j.at("seconds").get<double>();
    c.info.backend = j.at("backend").get<std::string>();
    return true;
  } catch (const std::exception& e) {  // unreadable, damaged or from an older layout: trained anew
    why = std::string("unreadable (") + e.what() + ")";
    return false;
  }
}

fs::path user_cache_dir(const DataConfig& data, uint64_t fingerprint, const std::string& name) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path cache = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : "/tmp") / ".cache";
  return cache / "ebm_engine" / (data.dataset + "-" + hex64(fingerprint) + "-" + name);
}

}  // namespace

Config classifier_config(const DataConfig& data, const ClassifierRecipe& recipe) {
  Config c;
  c.data = data;
  c.data.limit = 0;
  c.data.batch_size = recipe.batch;
  c.model.channels = recipe.channels;
  c.model.kernel_size = 3;
  c.model.stride = 2;
  c.model.outputs = kClasses;
  c.seed = recipe.seed;
  c.train.lr = recipe.lr;
  c.train.beta1 = 0.9;
  c.train.lr_schedule = "cosine";
  c.train.validate = false;
  c.output_dir = "classifier";
  return c;
}

std::string classifier_dir_name(const DataConfig& data, const ClassifierRecipe& recipe) {
  std::string name = "classifier-" + std::to_string(data.pad_to);
  if (recipe_json(recipe) != recipe_json(ClassifierRecipe{})) {  // another recipe never replaces the default's cache
    const std::string text = recipe_json(recipe).dump();
    name += "-" + hex64(crc32_ieee(text.data(), text.size())).substr(8);
  }
  return name;
}

std::string classifier_dir(const DataConfig& data, uint64_t fingerprint, const ClassifierRecipe& recipe) {
  const std::string name = classifier_dir_name(data, recipe);
  if (writable_dir(data.dir)) return (fs::path(data.dir) / name).string();
  return user_cache_dir(data, fingerprint, name).string();
}

void classify(Backend& classifier, const Tensor& x, std::vector<float>& probs, std::vector<float>* features) {
  const NetSpec& net = classifier.options().net;
  const int k = net.outputs;
  const int64_t n = x.dim(0), chunk = 500;  // bounded memory for any n (im2col of 500 images is ~40 MB)
  std::vector<float> f, part, feats;
  f.reserve(size_t(n * k));
  if (features) features->clear(), features->reserve(size_t(n * net.dense_in));
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = std::min(chunk, n - first);
    part = classifier.outputs(rows_of(x, first, m), features ? &feats : nullptr);
    EBM_CHECK(int64_t(part.size()) == m * k, "classify: the classifier gave " + std::to_string(part.size()) +
                                                 " outputs for " + std::to_string(m) + " images of " +
                                                 std::to_string(k) + " classes");
    f.insert(f.end(), part.begin(), part.end());
    if (features) features->insert(features->end(), feats.begin(), feats.end());
  }
  softmax_rows(f, n, k, probs);
}

Classifier load_or_train_classifier(const DataConfig& data_cfg, const std::string& backend, std::ostream& log,
                                    const ClassifierRecipe& recipe, bool save) {
  DataConfig dc = data_cfg;
  dc.limit = 0;
  const Dataset data = load_dataset(dc);
  if (data.train_labels.empty() || data.test_labels.empty())
    user_fail(dc.dir, ": the sample-quality classifier needs the label files (train-labels-idx1-ubyte[.gz] and ",
              "t10k-labels-idx1-ubyte[.gz]) beside the images; scripts/get_data.sh fetches them");
  for (uint8_t y : data.train_labels)
    if (y >= kClasses) user_fail(dc.dir, ": a training label is ", int(y), "; the classifier knows classes 0-9");
  const int64_t n_train = data.train.dim(0);
  const uint64_t fingerprint = dataset_fingerprint(data.train);
  // Beside the data first, then the user's cache (where a read-only data folder's classifier goes).
  const std::string name = classifier_dir_name(dc, recipe);
  const fs::path beside = fs::path(dc.dir) / name, user = user_cache_dir(dc, fingerprint, name);
  Classifier c;
  std::string why, why_user;
  if (load_cached(beside, fingerprint, n_train, recipe, c, why)) return c;
  if (load_cached(user, fingerprint, n_train, recipe, c, why_user)) return c;
  const fs::path dir = classifier_dir(dc, fingerprint, recipe);
  if (!why.empty()) log << "classifier: the cache " << beside.string() << " is " << why << "; training anew\n";
  if (save && !writable_dir(dir.parent_path()))
    user_fail("cannot cache the sample-quality classifier: neither ", dc.dir, " nor ", dir.parent_path().string(),
              " can be written (set XDG_CACHE_HOME to a writable folder)");

  const Config cc = classifier_config(dc, recipe);
  const int batch = recipe.batch, shift = recipe.shift;
  const NetSpec net = net_spec_for(cc);
  EngineOptions o = engine_options_for(cc);
  o.net = net;
  o.batch_size = batch;
  o.buffer_capacity = o.buffer_initial = batch;  // never used: the classifier is trained by param_grad + adam_step
  std::unique_ptr<Backend> be = make_backend(backend, o);
  be->set_params(init_params(net, recipe.seed));

  const int64_t steps = (recipe.images + batch - 1) / batch;
  log << "classifier: training the sample-quality classifier of " << dc.dir << " (" << n_train << " labelled images, "
      << steps << " steps of " << batch << ", " << backend_name(be->facts().kind) << "); cached in " << dir.string()
      << "\n" << std::flush;
  std::mt19937_64 rng(recipe.seed);
  std::vector<int64_t> order(static_cast<size_t>(n_train));
  size_t cursor = order.size();
  const int64_t img = net.image_size();
  Tensor x({batch, net.in_c, net.in_h, net.in_w});
  std::vector<float> f, p, w, grad;
  double loss_sum = 0;
  int64_t loss_n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  for (int64_t s = 0; s < steps; ++s) {
    be->set_lr(cc.train.lr * 0.5 * (1.0 + std::cos(std::numbers::pi * double(s) / double(steps))));
    std::vector<uint8_t> y(batch);
    for (int b = 0; b < batch; ++b) {
      if (cursor == order.size()) {  // a new epoch: a new order
        for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
        cursor = 0;
      }
      const int64_t row = order[cursor++];
      const int dy = int(rng() % (2 * shift + 1)) - shift, dx = int(rng() % (2 * shift + 1)) - shift;
      shift_image(data.train.ptr() + row * img, net.in_c, net.in_h, net.in_w, dy, dx, x.ptr() + b * img);
      y[size_t(b)] = data.train_labels[size_t(row)];
    }
    // Softmax cross-entropy L = −(1/n) Σ_i log p(y_i|x_i): dL/df_ik = (p_ik − [k = y_i]) / n.
    f = be->outputs(x);
    softmax_rows(f, batch, kClasses, p);
    w.assign(p.begin(), p.end());
    for (int b = 0; b < batch; ++b) {
      loss_sum -= std::log(std::max(1e-30, double(p[size_t(b * kClasses + y[size_t(b)])])));
      w[size_t(b * kClasses + y[size_t(b)])] -= 1.0f;
    }
    for (float& v : w) v /= float(batch);
    loss_n += batch;
    be->param_grad(x, w, f, grad);
    be->adam_step(grad);
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last).count() > 5.0 || s + 1 == steps) {
      last = now;
      const double el = std::chrono::duration<double>(now - t0).count();
      log << "classifier: step " << s + 1 << "/" << steps << "  loss " << loss_sum / double(std::max<int64_t>(1, loss_n))
          << "  ETA " << int(el / double(s + 1) * double(steps - s - 1)) << "s\n" << std::flush;
      loss_sum = 0, loss_n = 0;
    }
  }
  c.info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.info.test_accuracy = accuracy(*be, data.test, data.test_labels);
  c.info.n_test = data.test.dim(0);
  c.info.n_train = n_train;
  c.info.backend = backend_name(be->facts().kind);
  c.info.dir = dir.string();
  c.info.trained_now = true;
  c.model.config = cc;
  c.model.net = net;
  c.model.params = be->params();
  const json info = {{"recipe", recipe_json(recipe)},
                     {"dataset", dc.dataset},
                     {"train_fingerprint", hex64(fingerprint)},
                     {"n_train", n_train},
                     {"n_test", c.info.n_test},
                     {"test_accuracy", c.info.test_accuracy},
                     {"seconds", c.info.seconds},
                     {"backend", c.info.backend},
                     {"images_seen", steps * batch}};
  if (save) save_model(dir.string(), net, c.model.params, cc, "classifier.json", info.dump(2) + "\n");
  log << "classifier: test accuracy " << c.info.test_accuracy * 100 << "% on " << c.info.n_test << " images, trained in "
      << int(c.info.seconds) << " s\n" << std::flush;
  return c;
}

}  // namespace ebm
