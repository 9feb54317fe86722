// ebm_eval: how good a model's samples are, as one JSON line — the Inception Score and FID under the data
// set's classifier (host/eval/classifier.hpp, trained once and cached beside the data), the class histogram and
// the mean top probability — for chains drawn from a checkpoint by a fixed protocol (host/eval/eval_quality.hpp)
// or for given samples.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/eval_quality.hpp"
#include "host/eval/jem_eval.hpp"
#include "host/io/dataset.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/charts.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/io/npy.hpp"
#include "host/io/output_files.hpp"
#include "host/io/png_image.hpp"
#include "host/tools/cli.hpp"
#include "host/tools/tool_main.hpp"

using namespace ebm;

namespace {

constexpr const char* kUsage =
    "usage: ebm_eval (--checkpoint DIR | --samples X.npy) [--n 1000] [--steps N] [--step-size S] [--noise S]\n"
    "                [--seed 0] [--data DIR] [--grid samples.png] [--npy out.npy] [--backend auto|cpu|cuda]\n"
    "                [--classifier-images 240000] [--class-conditional] [--ood DIR] [--compare DIR2]\n"
    "Measures sample quality with the data set's classifier and prints one JSON line:\n"
    "  is             Inception Score exp(E_x KL(p(y|x) || p(y))), from 1 (no class or one class) to 10\n"
    "  fid            Frechet distance of the classifier's penultimate features to the data set's test images\n"
    "  class_hist     how many samples the classifier puts in each class (argmax)\n"
    "  mean_max_prob  mean over samples of the classifier's top probability\n"
    "  n, classifier_accuracy (on the test split), and the sampling settings used\n"
    "With --checkpoint, n chains start from uniform noise in [-1,1] and run the checkpoint's `generate`\n"
    "settings (--steps, --step-size, --noise override them), in chunks of 250 chains, chunk c with seed\n"
    "--seed + c (default seed 0, the same noise for every checkpoint). With --samples, the images of the\n"
    "file (.npy float32 [n,1,H,W] in [-1,1], uint8, or IDX; 28x28 are padded) are scored as they are.\n"
    "The classifier of --data DIR (default: the checkpoint's data.dir, else data/mnist) is trained on its\n"
    "labelled training split the first time (about a minute on 2 cores) and cached in DIR/classifier-<P>/.\n"
    "  --grid PATH   the first 100 samples, each labelled with its class and probability\n"
    "  --npy PATH    the samples drawn, float32 [n,1,H,W]\n"
    "  --classifier-images N  images the classifier sees when it must be trained (fewer: quicker, less\n"
    "                accurate; a cache trained on another count is trained anew)\n"
    "A checkpoint with one output per class (train.objective \"jem\") samples E(x) = -logsumexp f(x), and the\n"
    "line gains \"jem\": its own accuracy, mean confidence and expected calibration error (15 bins; ece_se: its\n"
    "bootstrap standard error over the test images) on the test split of --data\n"
    "(default the checkpoint's data.dir) and, with --ood DIR (e.g. data/fashion-mnist), the AUROCs of three\n"
    "out-of-distribution scores of DIR's test images against that split: energy E(x), max softmax probability,\n"
    "and the norm of the input gradient of E (1 = perfect separation, 0.5 = none).\n"
    "  --compare DIR2  (such a checkpoint) a second one with the same classes and input, scored on the same test\n"
    "                images: \"jem\" gains \"compare\", DIR2's accuracy, mean confidence, ece and ece_se, and\n"
    "                ece_difference = this ECE - DIR2's with ece_difference_se, its paired bootstrap standard\n"
    "                error (the same digits resampled for both: whether one is better calibrated on this test set)\n"
    "  --class-conditional  (such a checkpoint) chain i samples E(x, y) = -f_y(x) for class y = i*K/n, so each\n"
    "                class gets n/K chains in a row; adds class_agreement, the fraction the data set's\n"
    "                classifier labels as the class asked for (overall, and per class)\n"
    "Progress goes to stderr; stdout holds only the JSON line.\n";

constexpr const char* kTool = "ebm_eval";

struct Flags {
  std::string checkpoint, samples, data, grid, npy, backend = "auto", ood, compare;
  bool conditional = false;
  std::optional<int> n, steps;
  std::optional<double> step_size, noise;
  uint64_t seed = 0;
  ClassifierRecipe recipe;
};

Flags parse(int argc, char** argv, bool& help) {
  Args a(argc, argv,
         {"--checkpoint", "--samples", "--n", "--steps", "--step-size", "--noise", "--seed", "--data", "--grid", "--npy",
          "--backend", "--classifier-images", "--ood", "--compare"},
         {"--help", "--class-conditional"});
  help = a.has("--help");
  Flags f;
  if (help) return f;
  if (!a.positional().empty()) user_fail("unexpected argument '", a.positional()[0], "' (see --help)");
  f.checkpoint = a.str("--checkpoint", "");
  f.samples = a.str("--samples", "");
  if (f.checkpoint.empty() == f.samples.empty())
    user_fail(f.checkpoint.empty() ? "give --checkpoint DIR (samples drawn from it) or --samples X.npy (see --help)"
                                   : "give --checkpoint or --samples, not both");
  if (!f.samples.empty()) {
    for (const char* flag : {"--n", "--steps", "--step-size", "--noise", "--seed", "--npy"})
      if (a.has(flag)) user_fail(flag, " sets how samples are drawn from a checkpoint; --samples gives them already");
    for (const char* flag : {"--class-conditional", "--ood", "--compare"})
      if (a.has(flag)) user_fail(flag, " measures a checkpoint's model; --samples gives images without one");
  }
  f.data = a.str("--data", "");
  f.ood = a.str("--ood", "");
  f.compare = a.str("--compare", "");
  f.conditional = a.has("--class-conditional");
  f.grid = a.str("--grid", "");
  f.npy = a.str("--npy", "");
  f.backend = a.str("--backend", f.backend);
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    user_fail("option --backend expects auto, cpu or cuda, got \"", f.backend, "\"");
  if (auto c = flag_as_key(a, "--n", "generate.n")) {
    f.n = c->generate.n;
    if (*f.n < 2) user_fail("option --n: sample quality needs at least 2 samples, got ", *f.n);
  }
  if (auto c = flag_as_key(a, "--steps", "generate.steps")) f.steps = c->generate.steps;
  if (auto c = flag_as_key(a, "--step-size", "generate.step_size")) f.step_size = c->generate.step_size;
  if (auto c = flag_as_key(a, "--noise", "generate.noise")) f.noise = c->generate.noise;
  if (auto c = flag_as_key(a, "--seed", "seed")) f.seed = c->seed;
  f.recipe.images = a.integer("--classifier-images", f.recipe.images, 1, int64_t(1) << 40);
  if (!f.grid.empty()) require_png_output("--grid", f.grid);
  std::vector<OutputFile> outputs;
  if (!f.grid.empty()) outputs.push_back({"--grid", f.grid, {".png"}});
  if (!f.npy.empty()) outputs.push_back({"--npy", f.npy, {".npy"}});
  check_output_files(outputs, {{"--samples", f.samples}});
  return f;
}

int run(const Flags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  nlohmann::json out, jem;
  std::vector<int32_t> asked;  // --class-conditional: the class of each chain
  DataConfig data;
  std::optional<Model> model, other;  // other: --compare
  if (!f.checkpoint.empty()) {
    model = load_model(f.checkpoint);
    if (model->net.outputs == 1 && !f.compare.empty())
      user_fail("--compare: ", f.checkpoint, " is an energy net with one output; comparing calibration needs models ",
                "with one output per class (train.objective \"jem\")");
    if (model->net.outputs == 1 && (f.conditional || !f.ood.empty()))
      user_fail(f.conditional ? "--class-conditional" : "--ood", ": ", f.checkpoint, " is an energy net with one output; ",
                "class-conditional samples and the classifier's out-of-distribution scores need a model with one output ",
                "per class (train.objective \"jem\")");
    data = model->config.data;
    if (!f.compare.empty()) {  // before any work: a second K-output model with this one's classes and input
      other = load_model(f.compare);
      if (other->net.outputs != model->net.outputs || other->net.image_size() != model->net.image_size())
        user_fail("--compare: ", f.compare, " has model.outputs ", other->net.outputs, " and ", other->net.in_c, "x",
                  other->net.in_h, "x", other->net.in_w, " images, ", f.checkpoint, " ", model->net.outputs, " and ",
                  model->net.in_c, "x", model->net.in_h, "x", model->net.in_w, ": they are not scored on the same terms");
      if (other->config.data.dataset != model->config.data.dataset)
        user_fail("--compare: ", f.compare, " was trained on ", other->config.data.dataset, ", ", f.checkpoint, " on ",
                  model->config.data.dataset, ": their classes are not the same");
    }
  }
  if (!f.data.empty()) data.dir = f.data;
  QualityMeter meter(data, f.backend, std::cerr, f.recipe);

  Tensor x;
  if (model) {
    SamplerParams p = generate_params(model->config);
    if (f.steps) p.steps = *f.steps;
    if (f.step_size) p.step_size = float(*f.step_size);
    if (f.noise) p.noise = float(*f.noise);
    const int n = f.n.value_or(1000);
    const int K = model->net.outputs;
    auto backend = make_backend(f.backend, tool_engine_options(*model));
    backend->set_params(model->params);
    if (K > 1) {  // the model's own measures first: quick next to the chains, and said before them
      const Dataset test = load_test_split(data);
      const Dataset ood = f.ood.empty() ? Dataset() : load_ood_split(data, f.ood);
      const JemReport jr = jem_report(*backend, test.test, test.test_labels, f.ood.empty() ? nullptr : &ood.test,
                                      data_label(ood.test_path));
      std::cerr << "ebm_eval: the model as a classifier: accuracy " << jr.accuracy << ", mean confidence "
                << jr.mean_confidence << ", ECE " << jr.ece << " (bootstrap standard error " << jr.ece_se << ") on "
                << jr.n_test << " test images";
      if (!f.ood.empty())
        std::cerr << "; AUROC vs " << jr.ood << ": energy " << jr.auroc_energy << ", max prob " << jr.auroc_max_prob
                  << ", grad norm " << jr.auroc_grad_norm;
      std::cerr << "\n";
      jem = jem_json(jr);
      if (other) {
        auto b = make_backend(f.backend, tool_engine_options(*other));
        b->set_params(other->params);
        CalibrationComparison c;
        try {  // the first model's measures passed just above: what fails here is the second's (NaN outputs)
          c = compare_calibration(*backend, *b, test.test, test.test_labels);
        } catch (const UserError& e) {
          user_fail("--compare ", f.compare, ": ", e.what());
        }
        std::cerr << "ebm_eval: against " << f.compare << ": accuracy " << c.accuracy << ", ECE " << c.ece
                  << "; ECE difference " << c.ece_difference << " (paired bootstrap standard error "
                  << c.ece_difference_se << ")\n";
        jem["compare"] = comparison_json(c, f.compare);
      }
    }
    if (f.conditional) asked = conditional_classes(n, K);
    std::cerr << "ebm_eval: sampling " << n << " chains x " << p.steps << " steps from uniform noise (step size "
              << p.step_size << ", noise " << p.noise << ", seed " << f.seed << (f.conditional ? ", class-conditional" : "")
              << ") on " << backend_name(backend->facts().kind) << "\n";
    const auto ts = std::chrono::steady_clock::now();
    x = draw_eval_samples(*backend, n, p, f.seed, [&](int done, int total) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
      std::cerr << "ebm_eval: " << done << "/" << total << " chains  " << int(el) << " s, ETA "
                << int(el / done * (total - done)) << " s\n";
    }, f.conditional ? &asked : nullptr);
    // The settings as given (doubles), not their float copies in SamplerParams (0.005f prints as 0.004999…).
    out = {{"checkpoint", f.checkpoint}, {"steps", p.steps},
           {"step_size", f.step_size.value_or(model->config.generate.step_size)},
           {"noise", f.noise.value_or(model->config.generate.noise)},
           {"seed", f.seed}, {"start", "uniform"}};
    if (!f.npy.empty()) write_npy(f.npy, x);
  } else {
    std::vector<std::string> warnings;
    x = load_images_for_net(f.samples, meter.net(), warnings, "the evaluator's classifier");
    for (const std::string& w : warnings) print_warning(kTool, w);
    if (x.dim(0) < 2) user_fail(f.samples, ": sample quality needs at least 2 samples, the file holds ", x.dim(0));
    out = {{"samples", f.samples}};
  }

  const QualityReport r = meter.score(x);
  nlohmann::json line = quality_json(r);
  line["classifier_accuracy"] = meter.classifier().test_accuracy;
  line["classifier_test_images"] = meter.classifier().n_test;
  line["classifier"] = meter.classifier().dir;
  for (auto& [k, v] : out.items()) line[k] = v;
  if (!jem.is_null()) line["jem"] = jem;
  if (f.conditional) {
    const std::vector<double> agree = class_agreement(r.label, asked, model->net.outputs);
    line["class_conditional"] = true;
    line["class_agreement"] = agree[0];
    line["class_agreement_per_class"] = std::vector<double>(agree.begin() + 1, agree.end());
  }
  line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (!f.grid.empty()) {
    const int shown = int(std::min<int64_t>(100, x.dim(0)));
    std::vector<std::string> labels;
    for (int i = 0; i < shown; ++i) {
      char buf[24];
      std::snprintf(buf, sizeof buf, "%d %.2f", r.label[size_t(i)], double(r.max_prob[size_t(i)]));
      labels.push_back(buf);
    }
    write_png(f.grid, image_grid(x.ptr(), shown, int(x.dim(2)), int(x.dim(3)), 10, labels, 2));
    std::cerr << "ebm_eval: wrote " << f.grid << " (the first " << shown << " samples, class and probability)\n";
  }
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ebm::tool_main(kTool, kUsage, argc, argv, parse, run); }
