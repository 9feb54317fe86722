// The Python module ebm_engine (pybind11): the engine's checkpoints and training runs from Python, over the
// same library the command-line tools use — no second implementation. `load` gives a model (energies, Langevin
// samples, weights under their PyTorch names); `Trainer` is ebm_train one step at a time (host/train/training_run.hpp:
// Training), writing the same run folder bit for bit.
//
// Threads and signals: the GIL is released while the engine computes (a training step, sampling, energies), so
// other Python threads run meanwhile. Ctrl-C (SIGINT: Python's handler only sets a flag while C++ runs) is
// looked at between steps: the run stops after the current step and writes last/, as ebm_train does on SIGINT,
// then KeyboardInterrupt is raised again. SIGTERM during Trainer.run() (scancel, docker stop) stops the run the
// same way and then ends the process by that signal (PyTrainer::SigtermDeferred). A process forked after the CPU
// backend's OpenMP threads ran cannot run them (GNU OpenMP): the child gets a UserError naming the "spawn" method.
//
// Arrays: results (energies, samples, weights) are numpy arrays over the engine's own buffers, handed over
// without a copy; input images are copied once, into the engine's layout, while their range is checked.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cmath>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/train/memory_plan.hpp"
#include "host/train/training_run.hpp"

namespace py = pybind11;
using json = nlohmann::json;

namespace ebm {
namespace {

// The module's exception for a diverged run, made in PYBIND11_MODULE (the module's attribute keeps it alive).
PyObject* g_diverged_error = nullptr;

// JSON values cross through Python's json module: records are small, and NaN/None stay as metrics.jsonl has them.
py::object to_python(const json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// `obj` as JSON text; numpy scalars and arrays as the numbers and lists they hold (.tolist()). Anything else that is
// not JSON (a set, an object) is a UserError naming `what` (e.g. the override's key) and the value's type.
// The dotted key of the first float in `obj` (dicts and lists, walked in order) that is NaN or infinite — JSON has
// no such number, and json.dumps would write one that no reader takes back — with its repr; nullopt when none.
// Nesting deeper than kMaxJsonDepth (a config is 3 deep) is a UserError naming `what`: a dict or list that
// contains itself would otherwise recurse until the stack overflows.
constexpr int kMaxJsonDepth = 32;
std::optional<std::pair<std::string, std::string>> non_finite(py::handle obj, const std::string& key,
                                                              const std::string& what, int depth = 0) {
  const bool nested = py::isinstance<py::dict>(obj) || py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj);
  if (nested && depth >= kMaxJsonDepth)
    user_fail(what, ": ", key.empty() ? std::string("the value") : "\"" + key + "\"", " is nested more than ",
              kMaxJsonDepth, " levels deep (a dict or list that contains itself?)");
  if (py::isinstance<py::dict>(obj)) {
    for (auto [k, v] : py::reinterpret_borrow<py::dict>(obj)) {
      const std::string name = std::string(py::str(k));
      if (auto found = non_finite(v, key.empty() ? name : key + "." + name, what, depth + 1)) return found;
    }
  } else if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    size_t i = 0;
    for (py::handle v : obj) {
      if (auto found = non_finite(v, key + "[" + std::to_string(i++) + "]", what, depth + 1)) return found;
    }
  } else if (py::isinstance<py::float_>(obj)) {
    if (!std::isfinite(obj.cast<double>())) return std::make_pair(key, std::string(py::repr(obj)));
  } else if (py::hasattr(obj, "tolist")) {  // numpy scalars and arrays, as json.dumps below takes them
    return non_finite(obj.attr("tolist")(), key, what, depth);
  }
  return std::nullopt;
}

std::string to_json_text(py::handle obj, const std::string& what) {
  if (auto bad = non_finite(obj, "", what)) {
    if (bad->first.empty()) user_fail(what, ": must be a finite number, got ", bad->second);
    user_fail(what, ": \"", bad->first, "\" must be a finite number, got ", bad->second);
  }
  py::cpp_function as_json([](py::handle o) -> py::object {
    if (py::hasattr(o, "tolist")) return o.attr("tolist")();
    throw py::type_error(std::string(py::str(py::type::of(o).attr("__name__"))));
  });
  try {
    return py::module_::import("json").attr("dumps")(obj, py::arg("default") = as_json).cast<std::string>();
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError) && !e.matches(PyExc_ValueError)) throw;
    user_fail(what, ": a value of type ", std::string(py::str(e.value())), " is not JSON (numbers, strings, booleans, ",
              "lists, dicts)");
  }
}

// A path argument: str or os.PathLike.
std::string path_arg(py::handle p, const char* what) {
  if (py::isinstance<py::bytes>(p)) return path_arg(py::module_::import("os").attr("fsdecode")(p), what);
  if (!py::isinstance<py::str>(p) && !py::hasattr(p, "__fspath__"))
    user_fail(what, ": expected a path (str or os.PathLike), got ", std::string(py::str(py::type::of(p).attr("__name__"))));
  const std::string path = py::str(py::module_::import("os").attr("fspath")(p));
  if (path.empty()) user_fail(what, ": the path is empty");
  if (path.find('\0') != std::string::npos) user_fail(what, ": the path ", std::string(py::repr(p)), " holds a NUL character");
  return path;
}

// True for Python's and numpy's booleans, which are integers to Python but never a count, class or seed here.
bool is_bool(py::handle v) {
  return py::isinstance<py::bool_>(v) || py::isinstance(v, py::module_::import("numpy").attr("bool_"));
}

// v as a Python int: an int, or an integer-like scalar that says so through __index__ (numpy.int64(3), a 0-d
// integer array); nullopt for anything else (a float, a string, a bool, a 1-element list).
std::optional<py::int_> as_index(py::handle v) {
  if (is_bool(v)) return std::nullopt;
  if (py::isinstance<py::int_>(v)) return py::reinterpret_borrow<py::int_>(v);
  if (!py::hasattr(v, "__index__")) return std::nullopt;
  PyObject* i = PyNumber_Index(v.ptr());
  if (!i) {
    PyErr_Clear();
    return std::nullopt;
  }
  return py::reinterpret_steal<py::int_>(i);
}

// An integer argument (None: not given): a UserError naming it for a non-integer (bool included) or one beyond
// a 64-bit integer; the bounds of its config key are checked by the caller. numpy integers are taken.
std::optional<long long> int_arg(py::handle v, const char* what) {
  if (v.is_none()) return std::nullopt;
  const std::optional<py::int_> i = as_index(v);
  if (!i) user_fail(what, ": expected an integer, got ", std::string(py::repr(v)));
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(i->ptr(), &overflow);
  if (overflow != 0) user_fail(what, ": ", std::string(py::repr(v)), " is out of range");
  return x;
}

// A seed: an integer in [0, 2^64).
uint64_t seed_arg(py::handle v) {
  const std::optional<py::int_> i = as_index(v);
  if (!i) user_fail("seed: expected an integer in [0, 2^64), got ", std::string(py::repr(v)));
  const unsigned long long x = PyLong_AsUnsignedLongLong(i->ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    user_fail("seed: expected an integer in [0, 2^64), got ", std::string(py::repr(v)));
  }
  return x;
}

// A numpy array that owns `v` (no copy): freed when the last array viewing it goes.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, const std::vector<py::ssize_t>& shape) {
  auto* owner = new std::vector<T>(std::move(v));
  py::capsule free_it(owner, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owner->data(), free_it);
}

py::array_t<float> tensor_to_numpy(Tensor&& t) {
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  return to_numpy(std::move(t.data), shape);
}

// Images for `net` from a numpy array (or anything numpy takes): float in [-1,1] or uint8 pixels, [N,1,H,W] or
// [N,H,W], smaller images padded as training pads them (host/eval/scoring.hpp: images_for_net). Warnings (pixels in
// [0,1]) become Python UserWarnings. UserError naming `what` on a bad array.
Tensor images_from(py::handle x, const NetSpec& net, const std::string& what) {
  py::array a = py::array::ensure(x);
  if (!a) user_fail(what, ": expected a numpy array of images, got ", std::string(py::str(py::type::of(x))));
  const std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  std::vector<std::string> warnings;
  Tensor t;
  const char kind = a.dtype().kind();
  if (a.dtype().is(py::dtype::of<uint8_t>())) {
    auto c = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(a);
    t = images_for_net(what, shape, c.data(), {}, net, warnings);
  } else if (kind == 'f') {
    auto c = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    t = images_for_net(what, shape, nullptr, std::vector<float>(c.data(), c.data() + c.size()), net, warnings);
  } else {
    user_fail(what, ": expected float32 images in [-1,1] or uint8 pixels 0..255, got dtype ",
              std::string(py::str(a.dtype())));
  }
  for (const std::string& w : warnings)  // stacklevel 1: the line of Python that called the engine
    if (PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1) != 0) throw py::error_already_set();
  return t;
}

std::string backend_arg(const std::string& b) {
  if (b != "auto" && b != "cpu" && b != "cuda") user_fail("backend: expected \"auto\", \"cpu\" or \"cuda\", got \"", b, "\"");
  return b;
}

// A checkpoint's network with a backend to run it: what ebm_score and ebm_sample do, from Python.
class PyModel {
 public:
  PyModel(Model m, const std::string& backend, std::string source) : model_(std::move(m)), source_(std::move(source)) {
    py::gil_scoped_release unlocked;
    backend_ = make_backend(backend_arg(backend), tool_engine_options(model_));
    backend_->set_params(model_.params);
  }

  // New weights for the same network (a Trainer's model as training goes on).
  void set_params(std::vector<float> params) {
    std::lock_guard<std::mutex> lock(mu_);
    model_.params = std::move(params);
    backend_->set_params(model_.params);
  }

  py::array_t<float> energy(py::handle x) {
    const Tensor images = images_from(x, model_.net, "energy(x)");
    std::vector<float> e;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      e = energies_from_f(backend_->energy(images));
    }
    const auto n = py::ssize_t(e.size());
    return to_numpy(std::move(e), {n});
  }

  // logits(x) -> [N, K]: the K outputs f(x) (a train.objective "jem" model's class logits; K = 1: f itself).
  py::array_t<float> logits(py::handle x) {
    const Tensor images = images_from(x, model_.net, "logits(x)");
    std::vector<float> f;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      f = backend_->outputs(images);
    }
    return to_numpy(std::move(f), {py::ssize_t(images.dim(0)), py::ssize_t(model_.net.outputs)});
  }

  // sample's y: None (the unconditional energy), one class for every chain, or one per chain.
  std::vector<int32_t> classes_arg(py::object y, int64_t n) const {
    std::vector<int32_t> out;
    if (y.is_none()) return out;
    if (model_.net.outputs < 2)
      user_fail("sample(y=...): class-conditional samples need a model with one output per class (train.objective ",
                "\"jem\"); this one has model.outputs = ", model_.net.outputs);
    auto one = [&](py::handle v, const std::string& what) -> int32_t {
      const std::optional<long long> k = int_arg(v, what.c_str());
      if (!k || *k < 0 || *k >= model_.net.outputs)
        user_fail(what, ": classes run from 0 to ", model_.net.outputs - 1, ", got ", std::string(py::str(v)));
      return int32_t(*k);
    };
    if (py::isinstance<py::str>(y) || py::isinstance<py::bytes>(y))
      user_fail("sample(y=...): expected a class number or one per chain, got a string");
    if (is_bool(y)) user_fail("sample(y=...): expected a class number or one per chain, got ", std::string(py::repr(y)));
    const py::module_ np = py::module_::import("numpy");
    if (const int ndim = np.attr("ndim")(np.attr("squeeze")(y)).cast<int>(); ndim > 1)  // (n, 1) is one per chain
      user_fail("sample(y=...): expected a class number or a 1-D sequence of them (one per chain), got ", ndim,
                "-D values");
    if (np.attr("ndim")(y).cast<int>() == 0 && py::hasattr(y, "__index__"))
      y = py::int_(py::module_::import("operator").attr("index")(y));  // numpy.int64(3), a 0-d array: one class
    if (py::isinstance<py::sequence>(y) || py::hasattr(y, "__array__")) {
      const py::list items = py::list(py::iter(np.attr("ravel")(y).attr("tolist")()));
      if (int64_t(items.size()) != n)
        user_fail("sample(y=...): ", items.size(), " classes for ", n, " chains; give one class, or one per chain");
      for (size_t i = 0; i < items.size(); ++i) out.push_back(one(items[i], "y[" + std::to_string(i) + "]"));
      return out;
    }
    out.assign(size_t(n), one(y, "y"));
    return out;
  }

  py::object sample(py::handle n_arg, py::handle steps_arg, std::optional<double> step_size,
                    std::optional<double> noise, py::handle seed_obj, py::object init, py::handle every_arg,
                    py::handle y_arg) {
    const Config& c = model_.config;
    // Each argument is checked by its config key's own rule (generate.*): the same bounds as ebm_sample's flags.
    auto checked = [](const char* arg, const char* key, const json& v) { config_from_flag(arg, key, v.dump()); };
    auto finite = [](const char* arg, double v) {
      if (!std::isfinite(v)) user_fail(arg, ": expected a finite number, got ", v);
    };
    const std::optional<long long> n = int_arg(n_arg, "n"), steps = int_arg(steps_arg, "steps");
    const int every = int(std::clamp<long long>(int_arg(every_arg, "every").value_or(0), -1, 1LL << 30));
    const uint64_t seed = seed_arg(seed_obj);
    SamplerParams p = generate_params(c);
    if (steps) checked("steps", "generate.steps", *steps), p.steps = int(*steps);
    if (step_size) finite("step_size", *step_size), checked("step_size", "generate.step_size", *step_size), p.step_size = float(*step_size);
    if (noise) finite("noise", *noise), checked("noise", "generate.noise", *noise), p.noise = float(*noise);
    if (every < 0) user_fail("every: the snapshot period must be >= 0 steps (0 = no trajectory), got ", every);
    // The result, and with every > 0 the trajectory (held in memory until it is returned): refused up front when
    // it would not fit, rather than found out by the kernel's OOM killer minutes later.
    const bool from_buffer = py::isinstance<py::str>(init);  // init="buffer": the checkpoint's replay buffer
    if (from_buffer && init.cast<std::string>() != "buffer")
      user_fail("sample(init): a string must be \"buffer\" (the checkpoint's replay buffer), got \"",
                init.cast<std::string>(), "\"");
    const int64_t count = init.is_none() || from_buffer ? n.value_or(c.generate.n) : 0;
    if (init.is_none() || from_buffer) checked("n", "generate.n", count);
    if (every > 0 && count > 0) {
      const double snapshots = double(p.steps / every + 2), bytes = snapshots * double(count) * double(model_.net.image_size()) * 4;
      const double avail = host_memory_available();
      if (avail > 0 && bytes > 0.8 * avail)
        user_fail("sample: the trajectory of ", count, " chains every ", every, " of ", p.steps, " steps is ",
                  int64_t(snapshots), " snapshots, ", human_bytes(bytes), "; this machine has ", human_bytes(avail),
                  " available: raise every, or lower n or steps");
    }
    Tensor start;
    std::vector<int32_t> classes;
    if (from_buffer) {  // a Trainer's model: its run folder, whose last checkpoint holds the buffer
      namespace fs = std::filesystem;
      const std::string dir = fs::exists(fs::path(source_) / "train_state.safetensors") ? source_ :
                              (fs::path(source_) / "last").string();
      if (!fs::exists(fs::path(dir) / "train_state.safetensors"))
        user_fail("sample(init=\"buffer\"): ", source_, " holds no replay buffer (train_state.safetensors), nor a last/ ",
                  "checkpoint with one: load a training checkpoint (a Trainer's model: after its first checkpoint)");
      classes = classes_arg(py::reinterpret_borrow<py::object>(y_arg), count);
      start = buffer_start(read_replay_buffer(dir, model_.net), int(count), classes, model_.net.outputs, dir);
    } else if (!init.is_none()) {
      start = images_from(init, model_.net, "sample(init)");
      if (n && *n != start.dim(0))
        user_fail("sample: n = ", *n, " but init holds ", start.dim(0), " images; give one of them");
      checked("init", "generate.n", start.dim(0));
    } else {
      start = uniform_start(int(count), model_.net, seed);
    }
    if (!from_buffer) classes = classes_arg(py::reinterpret_borrow<py::object>(y_arg), start.dim(0));
    SampleRun r;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      r = run_sample(*backend_, std::move(start), p, seed, every, classes.empty() ? nullptr : &classes);
    }
    py::array_t<float> x = tensor_to_numpy(std::move(r.x));
    if (every == 0) return x;
    std::vector<py::ssize_t> shape{py::ssize_t(r.trajectory.size())};
    for (int64_t d : r.trajectory.at(0).shape) shape.push_back(py::ssize_t(d));
    std::vector<float> all;
    all.reserve(r.trajectory.size() * r.trajectory[0].data.size());
    for (const Tensor& t : r.trajectory) all.insert(all.end(), t.data.begin(), t.data.end());
    return py::make_tuple(x, to_numpy(std::move(all), shape), py::cast(r.snapshot_steps));
  }

  py::dict state_dict() {
    std::vector<float> params;
    {
      std::lock_guard<std::mutex> lock(mu_);
      params = model_.params;
    }
    auto* owner = new std::vector<float>(std::move(params));
    py::capsule free_it(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
    py::dict d;
    for (const ParamTensor& t : model_.net.tensors()) {
      const std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
      py::array_t<float> view(shape, owner->data() + t.offset, free_it);
      view.attr("flags").attr("writeable") = false;  // views of one buffer: a write would show in the others
      d[py::str(t.name)] = view;
    }
    return d;
  }

  py::object config() const { return to_python(config_to_json(model_.config)); }
  py::tuple input_shape() const { return py::make_tuple(model_.net.in_c, model_.net.in_h, model_.net.in_w); }
  int64_t num_params() const { return model_.net.num_params; }
  std::string backend() const { return backend_->describe(); }
  std::string summary() const { return model_.net.summary(); }
  int num_classes() const { return model_.net.outputs; }

  std::string repr() const {
    return "<ebm_engine.Model " + source_ + ": " + std::to_string(model_.net.num_params) + " parameters, input " +
           std::to_string(model_.net.in_c) + "x" + std::to_string(model_.net.in_h) + "x" + std::to_string(model_.net.in_w) +
           ", " + backend_name(backend_->facts().kind) + " backend>";
  }

 private:
  Model model_;
  std::string source_;
  std::unique_ptr<Backend> backend_;
  std::mutex mu_;  // one computation at a time on the backend
};

std::shared_ptr<PyModel> load(py::handle dir_arg, std::optional<std::string> backend) {
  const std::string dir = path_arg(dir_arg, "checkpoint_dir");
  Model model = load_model(dir);
  // Loaded all the same (a diverged checkpoint can be looked at), as ebm_sample and ebm_score warn of its energies.
  const auto bad = std::count_if(model.params.begin(), model.params.end(), [](float v) { return !std::isfinite(v); });
  if (bad > 0) {
    const std::string w = dir + ": " + std::to_string(bad) + " of " + std::to_string(model.params.size()) +
                          " weights are not finite (NaN or inf): the checkpoint may have diverged, and its energies, " +
                          "logits and samples will be NaN";
    if (PyErr_WarnEx(PyExc_UserWarning, one_line(w).c_str(), 1) != 0) throw py::error_already_set();
  }
  return std::make_shared<PyModel>(std::move(model), backend.value_or("auto"), dir);
}

// The overrides argument as ebm_train's --set assignments: a dict {"train.epochs": 2} (values as JSON) or a
// list of "key=value" strings.
std::vector<std::string> override_list(py::handle overrides) {
  std::vector<std::string> sets;
  if (overrides.is_none()) return sets;
  if (py::isinstance<py::dict>(overrides)) {
    for (auto [k, v] : py::reinterpret_borrow<py::dict>(overrides)) {
      const std::string key = py::str(k);
      // A text setting (output_dir, data.dir, ...) takes a str or a path. ebm_train's --set reads a string key's
      // value as text whatever it looks like, so None, True or 5 here would become the folder "null", "true", "5".
      if (config_key_is_text(key)) {
        if (!py::isinstance<py::str>(v) && !py::hasattr(v, "__fspath__"))
          user_fail("overrides: \"", key, "\" must be a string, got ", std::string(py::repr(v)));
        sets.push_back(key + "=" + json(std::string(py::str(py::module_::import("os").attr("fspath")(v)))).dump());
        continue;
      }
      sets.push_back(key + "=" + to_json_text(v, "overrides: \"" + key + "\""));
    }
    return sets;
  }
  if (!py::isinstance<py::list>(overrides) && !py::isinstance<py::tuple>(overrides))
    user_fail("overrides: expected a dict {\"train.epochs\": 2} or a list of \"key=value\" strings, got ",
              std::string(py::str(py::type::of(overrides).attr("__name__"))));
  for (py::handle o : overrides) {
    if (!py::isinstance<py::str>(o))
      user_fail("overrides: expected \"key=value\" strings in the list, got ", std::string(py::repr(o)));
    sets.push_back(o.cast<std::string>());
  }
  return sets;
}

// The config argument, a dict or a file (`file`: its path, left empty for a dict).
Config config_arg(py::handle config, const std::vector<std::string>& sets, std::string& file) {
  if (py::isinstance<py::dict>(config))
    return config_from_text(to_json_text(config, "config"), "config dict", sets, OverrideSource::kPython);
  if (py::isinstance<py::str>(config) || py::hasattr(config, "__fspath__")) {
    file = py::str(py::module_::import("os").attr("fspath")(config));
    return load_config(file, sets, OverrideSource::kPython);
  }
  user_fail("config: expected a path to a JSON config or a dict in its schema, got ",
            std::string(py::str(py::type::of(config))));
}

// ebm_train, one step at a time.
class PyTrainer {
 public:
  PyTrainer(py::object config, py::object overrides, py::object resume_arg, std::optional<std::string> backend,
            bool verbose)
      : verbose_(verbose) {
    std::vector<std::string> sets = override_list(overrides);
    if (backend) sets.push_back("backend=" + backend_arg(*backend));
    TrainRunOptions o;
    o.config = config_arg(config, sets, o.config_file);
    if (py::isinstance<py::str>(resume_arg) && py::len(resume_arg) == 0)
      o.resume = "";  // the run's own message: an empty resume is an error, not a fresh start
    else if (!resume_arg.is_none())
      o.resume = path_arg(resume_arg, "resume");  // str or os.PathLike
    o.stop = &stop_;
    o.out = &out_;
    o.err = &err_;
    o.on_record = [this](const json& j) { records_.push_back(j); };
    o.python_api = true;  // advice names Trainer(..., resume=..., overrides={...}), not command-line flags
    try {
      py::gil_scoped_release unlocked;
      const std::filesystem::path cwd = std::filesystem::current_path();  // before the run looks at its folder
      training_ = std::make_unique<Training>(std::move(o));
      if (std::filesystem::path(training_->config().output_dir).is_relative()) run_folder_cwd_ = cwd;
    } catch (...) {
      forward_output();
      throw;
    }
    forward_output();
  }

  py::object run(py::object on_log, py::object on_epoch) {
    for (auto [f, name] : {std::pair{on_log, "on_log"}, std::pair{on_epoch, "on_epoch"}})
      if (!f.is_none() && !PyCallable_Check(f.ptr()))
        user_fail(name, ": expected a function of one record (or None), got ", std::string(py::repr(f)));
    {
      const SigtermDeferred deferred(*this);
      guarded([&] {
        for (;;) {
          deliver(on_log, on_epoch);
          if (training_->result()) break;
          step_once();
        }
      });
    }
    return final_result();
  }

  py::object next() {
    guarded([&] {
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (!records_.empty()) return;
        }
        if (training_->result()) return;
        step_once();
      }
    });
    std::optional<json> j;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!records_.empty()) {
        j = std::move(records_.front());
        records_.pop_front();
      }
    }
    if (!j) {
      final_result();  // raises DivergedError for a diverged run
      throw py::stop_iteration();
    }
    if (j->value("event", "") == "stopped") last_stopped_ = *j;
    return to_python(*j);
  }

  // Stops the run now (after the step that ran last): the last checkpoint, as a signal does. The final record.
  py::object stop() {
    finish_now(kStopCall);
    return final_result();
  }

  void save(py::handle dir_arg) {
    const std::string dir = path_arg(dir_arg, "save(dir)");
    check_working_folder();
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      training_->save(dir);
    }
    forward_output();
  }

  std::shared_ptr<PyModel> model() {
    std::vector<float> params;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      params = training_->sampling_params();
    }
    if (!model_) {
      Model m{training_->config(), training_->net(), std::move(params)};
      model_ = std::make_shared<PyModel>(std::move(m), training_->config().backend, training_->config().output_dir);
    } else {
      py::gil_scoped_release unlocked;
      model_->set_params(std::move(params));
    }
    return model_;
  }

  int64_t step() const { return training_->step(); }
  int64_t total_steps() const { return training_->total_steps(); }
  std::string output_dir() const { return training_->config().output_dir; }
  py::object config() const { return to_python(config_to_json(training_->config())); }
  bool finished() const { return training_->result().has_value(); }

 private:
  // SIGTERM (what scancel, docker stop and Kubernetes send) during run(), as ebm_train takes it: the run stops
  // after the current step with its last/ checkpoint, and then the signal is delivered as it would have been (the
  // process ends, by SIGTERM). Python lets only the main thread set a handler, and one the caller installed is
  // left alone (it runs between steps); elsewhere SIGTERM ends the process at once, as it does any Python program.
  class SigtermDeferred {
   public:
    explicit SigtermDeferred(PyTrainer& t) : t_(t), signal_(py::module_::import("signal")) {
      py::module_ threading = py::module_::import("threading");
      if (!threading.attr("current_thread")().is(threading.attr("main_thread")())) return;
      if (!signal_.attr("getsignal")(signal_.attr("SIGTERM")).is(signal_.attr("SIG_DFL"))) return;
      handler_ = py::cpp_function([this](py::args) {
        got_ = true;
        if (!t_.training_->result()) t_.stop_ = kStopSignal;
      });
      signal_.attr("signal")(signal_.attr("SIGTERM"), handler_);
    }
    // Puts SIG_DFL back (unless the handler was replaced meanwhile), then, after a SIGTERM, ends the process by it —
    // not while an exception leaves run() (a callback's, a refusal): that one goes on up.
    ~SigtermDeferred() {
      if (!handler_) return;
      try {
        if (signal_.attr("getsignal")(signal_.attr("SIGTERM")).is(handler_))
          signal_.attr("signal")(signal_.attr("SIGTERM"), signal_.attr("SIG_DFL"));
        if (!got_ || std::uncaught_exceptions() > 0) return;
        t_.err_ << "SIGTERM: stopped after the step" << (t_.training_->result() ? " with a checkpoint" : "")
                << "; ending the process as the signal asked\n";
        t_.forward_output();
        py::module_ sys = py::module_::import("sys");
        sys.attr("stdout").attr("flush")();
        sys.attr("stderr").attr("flush")();
        signal_.attr("raise_signal")(signal_.attr("SIGTERM"));
        // Still here: SIGTERM is not delivered to a process that is PID 1 (a container without an init) at its default
        // disposition; exit as a process ended by it would.
        py::module_::import("os").attr("_exit")(128 + 15);
      } catch (py::error_already_set&) {
      }
    }
    SigtermDeferred(const SigtermDeferred&) = delete;
    SigtermDeferred& operator=(const SigtermDeferred&) = delete;

   private:
    PyTrainer& t_;
    py::module_ signal_;
    py::object handler_;
    bool got_ = false;
  };

  // Runs `body`; a KeyboardInterrupt raised in it (between steps, or in a callback) stops the run with its
  // checkpoint first, then goes on up.
  template <class F>
  void guarded(F&& body) {
    try {
      body();
    } catch (py::error_already_set& e) {
      if (e.matches(PyExc_KeyboardInterrupt) && !training_->result()) {
        err_ << "KeyboardInterrupt: stopping after this step, with a checkpoint\n";
        finish_now(kStopSignal);
      }
      throw;
    }
  }

  // One step with the GIL released, then the console lines and the pending signals (Ctrl-C raises here).
  void step_once() {
    check_working_folder();
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(mu_);
      training_->advance();
    }
    forward_output();
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }

  // A relative output_dir is the run folder of the working folder Trainer(...) was made in: a change of folder
  // since (os.chdir, a notebook's %cd) would split the run between two folders, so the run goes no further.
  void check_working_folder() const {
    if (run_folder_cwd_.empty()) return;
    std::error_code ec;
    const std::filesystem::path now = std::filesystem::current_path(ec);
    if (!ec && now != run_folder_cwd_)
      user_fail("the working folder changed from ", run_folder_cwd_.string(), " to ", now.string(), " since Trainer(...) ",
                "was made with the relative output_dir \"", training_->config().output_dir, "\": os.chdir back, or make ",
                "the Trainer with an absolute output_dir (nothing was written in ", now.string(), ")");
  }

  void finish_now(int how) {
    if (!training_->result()) check_working_folder();
    if (!training_->result()) stop_ = how;
    while (!training_->result()) {
      {
        py::gil_scoped_release unlocked;
        std::lock_guard<std::mutex> lock(mu_);
        training_->advance();
      }
      forward_output();
    }
  }

  // The records since the last call to the callbacks: each `step` record to on_log, each `epoch` record to
  // on_epoch (with its `eval` record's figures under "eval" where train.eval scored that epoch).
  void deliver(py::handle on_log, py::handle on_epoch) {
    std::deque<json> got;
    {
      std::lock_guard<std::mutex> lock(mu_);
      got.swap(records_);
    }
    for (size_t i = 0; i < got.size(); ++i) {
      const std::string event = got[i].value("event", "");
      if (event == "step" && !on_log.is_none()) on_log(to_python(got[i]));
      if (event == "epoch" && !on_epoch.is_none()) {
        json rec = got[i];
        if (i + 1 < got.size() && got[i + 1].value("event", "") == "eval") rec["eval"] = got[i + 1];
        on_epoch(to_python(rec));
      }
      if (event == "stopped") last_stopped_ = got[i];
    }
  }

  // The run's end: its `stopped` record ({"event": "stopped", "step", "reason"}), None while it goes on or when
  // it had nothing to do; DivergedError when it diverged.
  py::object final_result() {
    if (const auto r = training_->result(); r && *r == kRunDiverged) {
      PyErr_SetString(g_diverged_error, training_->divergence().c_str());
      throw py::error_already_set();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const json& j : records_)
        if (j.value("event", "") == "stopped") last_stopped_ = j;
    }
    return last_stopped_ ? to_python(*last_stopped_) : py::none();
  }

  // The engine's console lines to sys.stdout / sys.stderr (GIL held), so that a notebook shows them. The
  // text is taken under the lock and written after it: a write may let another thread run.
  void forward_output() {
    auto take = [](std::ostringstream& s) {
      std::string text = s.str();
      s.str("");
      s.clear();
      return text;
    };
    std::string out, err;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out = take(out_), err = take(err_);
    }
    auto write = [](const std::string& text, const char* stream) {
      if (text.empty()) return;
      py::object f = py::module_::import("sys").attr(stream);
      if (f.is_none()) return;
      f.attr("write")(text);
      f.attr("flush")();
    };
    if (verbose_) write(out, "stdout");
    write(err, "stderr");
  }

  static constexpr int kStopSignal = kStopBySignal, kStopCall = kStopByCall;
  bool verbose_;
  std::ostringstream out_, err_;
  std::deque<json> records_;
  std::optional<json> last_stopped_;
  std::atomic<int> stop_{0};
  std::filesystem::path run_folder_cwd_;  // where a relative output_dir is: the working folder at Trainer(...)
  std::mutex mu_;  // the training, the records and the console buffers
  std::unique_ptr<Training> training_;
  std::shared_ptr<PyModel> model_;
};

}  // namespace
}  // namespace ebm

using ebm::PyModel;
using ebm::PyTrainer;

PYBIND11_MODULE(ebm_engine, m) {
  m.doc() = R"doc(ebm_engine: the EBM training engine from Python.

Energy-based models trained by contrastive divergence with Langevin-dynamics sampling and a replay
buffer (the seed notebook's method), on the same C++/CUDA engine as the command-line tools.

    import ebm_engine
    model = ebm_engine.load("runs/mnist/last")        # a checkpoint folder
    e = model.energy(images)                            # [N] float32 energies E = -f (low = likely)
    x = model.sample(n=16, steps=200, seed=0)           # [16,1,32,32] float32 in [-1,1]
    t = ebm_engine.Trainer("configs/mnist.json", overrides={"train.epochs": 1})
    for record in t: print(record)                      # the records metrics.jsonl holds
    t.run(on_log=print)                                 # or: run to the end

Images are numpy arrays [N,1,H,W] or [N,H,W], float32 in [-1,1] (training's scale (u - 127.5)/127.5) or
uint8 pixels 0..255; images smaller than the network's input (MNIST's 28x28 for 32x32) are padded with -1
as training pads them. Errors are ebm_engine.UserError (a ValueError) with the one-line message the tools
print; a diverged run raises ebm_engine.DivergedError. The GIL is released while the engine computes.)doc";
  m.attr("__version__") = "0.1.0";
  // Each docstring starts with its own signature, in Python's terms (pybind11's would say `handle` for an array).
  py::options options;
  options.disable_function_signatures();

  static py::exception<ebm::UserError> user_error(m, "UserError", PyExc_ValueError);
  user_error.attr("__doc__") =
      "A bad argument, config, checkpoint or data file: the message alone says what and where, in one line "
      "(e.g. 'sample(y=...): classes run from 0 to 9, got 12'). A ValueError.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ebm::UserError& e) {
      user_error(e.what());
    } catch (const ebm::CommError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const ebm::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, (std::string("internal error: ") + e.what()).c_str());
    }
  });
  ebm::g_diverged_error = PyErr_NewExceptionWithDoc("ebm_engine.DivergedError",
                                "The training run diverged (train.divergence): the message says at which step, why, "
                                "and which checkpoint to resume from.",
                                PyExc_RuntimeError, nullptr);
  if (!ebm::g_diverged_error) throw py::error_already_set();
  m.attr("DivergedError") = py::reinterpret_steal<py::object>(ebm::g_diverged_error);

  py::class_<PyModel, std::shared_ptr<PyModel>>(m, "Model", R"doc(A trained energy network and a backend to run it.

Made by ebm_engine.load(checkpoint_dir) or Trainer.model. Holds the sampling weights a checkpoint's
model.safetensors holds (EMA'd and spectrally normalised where the run had those on).)doc")
      .def("energy", &PyModel::energy, py::arg("x"), R"doc(energy(x) -> numpy.ndarray [N] float32

Energies E = -f(x) of the images x (low = probable under the model), as ebm_score computes them.
x: numpy array [N,1,H,W] or [N,H,W]; float (taken as float32) in [-1,1], or uint8 pixels 0..255 (mapped as
training maps them). H, W at most the network's input; smaller images are padded with -1.
Raises UserError (ValueError) on another shape or dtype, NaN pixels, or floats outside [-1,1]; warns
(UserWarning) when float pixels never go below 0 (images scaled to [0,1] by mistake).)doc")
      .def("logits", &PyModel::logits, py::arg("x"), R"doc(logits(x) -> numpy.ndarray [N, K] float32

The network's K outputs f(x) for the images x (as energy's x). For a train.objective "jem" model they are its
class logits: softmax(f(x)) is p(y|x), argmax the predicted class, and energy(x) = -logsumexp_y f_y(x)
(Grathwohl et al. 2020). K = 1 (the seed's energy net): f(x) = -energy(x).)doc")
      .def_property_readonly("num_classes", [](const PyModel& m) { return m.num_classes(); },
                             "K, the network's outputs: the classes of a train.objective \"jem\" model (1: an energy net).")
      .def("sample", &PyModel::sample, py::arg("n") = py::none(), py::arg("steps") = py::none(),
           py::arg("step_size") = py::none(), py::arg("noise") = py::none(), py::arg("seed") = py::int_(0),
           py::arg("init") = py::none(), py::arg("every") = py::int_(0), py::arg("y") = py::none(),
           R"doc(sample(n=None, steps=None, step_size=None, noise=None, seed=0, init=None, every=0, y=None)

Langevin chains, each step x <- clip(x + noise * N(0,1)); x <- clip(x - step_size * clip(grad_x E(x),
±grad_clip)), clips to [-1,1] (DESIGN §1), as ebm_sample runs them. Defaults: the checkpoint's `generate` settings (n, steps, step_size, noise; sampler.grad_clip).
n: chains (1..4096); seed: the start's uniform noise and the chains' noise (same seed, same samples);
init: start images instead of uniform noise in [-1,1] (as energy's x; n is then their count), or "buffer": the
checkpoint's replay buffer, newest first (a run with buffer.per_class: chain i from class y_i's ring).
Returns the samples, numpy float32 [n,1,H,W] in [-1,1]; with every = K > 0, a tuple (samples, trajectory,
steps): trajectory [S,n,1,H,W] holds the chains before step 1 and every K steps after (steps lists which).
y (a train.objective "jem" model): the chains sample E(x, y) = -f_y(x), digits of class y: one class for every
chain, or a sequence of n classes (e.g. numpy.repeat(numpy.arange(10), 10) with n=100: ten of each digit).
Without y such a model samples E(x) = -logsumexp_y f_y(x).
Raises UserError (ValueError) on a value outside its config key's range, naming the argument, and up front when
the trajectory would not fit in memory. Runs to the end once started: Ctrl-C is seen when it returns (a
long chain, e.g. steps=10**6, cannot be interrupted midway).)doc")
      .def("state_dict", &PyModel::state_dict, R"doc(state_dict() -> dict[str, numpy.ndarray]

The weights under their PyTorch names and shapes (convs.0.weight [C0,1,k,k], convs.0.bias [C0], ...,
dense.weight [K,D], dense.bias [K] with K = model.outputs: 1, or one per class for a JEM model), float32, read-only views of one buffer: torch.from_numpy(v.copy()) each
for load_state_dict.)doc")
      .def_property_readonly("config", &PyModel::config, "The checkpoint's resolved config (dict, the JSON schema).")
      .def_property_readonly("input_shape", &PyModel::input_shape, "The network's input (C, H, W).")
      .def_property_readonly("num_params", &PyModel::num_params, "Number of float32 parameters.")
      .def_property_readonly("backend", &PyModel::backend, "The backend running the model, in words.")
      .def_property_readonly("summary", &PyModel::summary, "The network as a Keras-like table (str).")
      .def("__repr__", &PyModel::repr);

  m.def("load", &ebm::load, py::arg("checkpoint_dir"), py::arg("backend") = "auto",
        R"doc(load(checkpoint_dir, backend="auto") -> Model

The model of a checkpoint folder (model.safetensors and config.json, e.g. runs/mnist/last or
runs/mnist/epoch_10; str or os.PathLike). backend: "auto" (CUDA where a device is present), "cpu" or "cuda".
Raises UserError (ValueError) naming the file on a missing or damaged checkpoint.)doc");

  py::class_<PyTrainer>(m, "Trainer", R"doc(Trainer(config, overrides=None, resume=None, backend=None, verbose=True)

A training run, as `ebm_train CONFIG --set ... --resume DIR` runs it: the same run folder (output_dir:
metrics.jsonl, checkpoints last/ and epoch_N/, samples/, curves.png), the same bits on the CPU.
config: a path to a JSON config, or a dict in the same schema (keys left out take their defaults).
overrides: a dict {"train.epochs": 2, "model.channels": [8, 16]} or a list of "key=value" strings.
resume: a checkpoint folder to continue from (README: what a resumed run may change).
backend: "auto", "cpu" or "cuda" (default: the config's).
verbose: False keeps the console lines (progress, epoch summaries) out of sys.stdout; warnings still show.
Every check runs here, before anything is written: UserError (ValueError) naming the key, file or value.

Iterate over a Trainer to run it a record at a time: each item is a dict as metrics.jsonl holds it
({"event": "step", "step": 10, "loss": ..., "cdiv": ..., "lr": ..., "ms_per_step": ...}, then "epoch",
"eval", "stopped", ... records); a step record comes every train.log_every steps. Breaking out of the loop
pauses the run: iterate again, or call run() or stop(), to go on. A Trainer dropped mid-run writes nothing
more (its last checkpoint is the newest epoch's or checkpoint_every's): stop() ends it with last/.
Ctrl-C stops the run after the current step with its last/ checkpoint, then raises KeyboardInterrupt.
SIGTERM (scancel, docker stop, Kubernetes) during run() stops it the same way, then ends the process by that
signal, as ebm_train does; this needs run() on the main thread and SIGTERM at its default (a handler of yours
is left alone and runs between steps).)doc")
      .def(py::init<py::object, py::object, py::object, std::optional<std::string>, bool>(),
           py::arg("config"), py::arg("overrides") = py::none(), py::arg("resume") = py::none(),
           py::arg("backend") = py::none(), py::arg("verbose") = true,
           "__init__(config, overrides=None, resume=None, backend=None, verbose=True): see help(ebm_engine.Trainer).")
      .def("run", &PyTrainer::run, py::arg("on_log") = py::none(), py::arg("on_epoch") = py::none(),
           R"doc(run(on_log=None, on_epoch=None) -> dict or None

Trains to the end (train.epochs or train.max_steps). on_log(record) is called with each "step" record,
on_epoch(record) with each "epoch" record (its "eval" record's IS/FID under "eval" where train.eval scored
that epoch). Returns the final {"event": "stopped", "step": N, "reason": "done" | "train.max_steps" |
"signal" | "stop"} record (None when a resumed run had nothing to do). Raises DivergedError when the run diverged
and could not roll back; an exception from a callback pauses the run (call run() again to go on). A rollback
(train.divergence.action "rollback") comes as a "diverged" and a "rollback" record, after which the steps and
epochs from the rollback's "step" on come again: the records already given for them were abandoned (a drift
rollback goes back drift_lookback epochs).)doc")
      .def("__iter__", [](py::object self) { return self; },
           "__iter__() -> Trainer: the trainer itself; `for record in trainer` trains a step at a time (see next()).")
      .def("__next__", &PyTrainer::next,
           "__next__() -> dict: the next record of metrics.jsonl, training steps as needed; StopIteration after the "
           "final \"stopped\" record.")
      .def("__repr__", [](const PyTrainer& t) {
        return "<ebm_engine.Trainer output_dir='" + t.output_dir() + "' step " + std::to_string(t.step()) + ">";
      })
      .def("stop", &PyTrainer::stop, R"doc(stop() -> dict

Ends the run after the last step run: the last/ checkpoint (once the divergence guard has passed it), as
SIGINT does. Returns the final "stopped" record.)doc")
      .def("save", &PyTrainer::save, py::arg("dir"), R"doc(save(dir)

Writes the state now as a checkpoint folder `dir` (ebm_train --resume continues from it, bit for bit), once
the divergence guard's probe has passed it; the run goes on unchanged. `dir` must be new or an empty folder,
outside the names the run writes (its folder, last/, epoch_N/): nothing is overwritten. UserError otherwise,
or when the probe does not pass.)doc")
      .def("samples", [](PyTrainer& t, py::object n, py::object seed) {
             return t.model()->sample(n, py::none(), std::nullopt, std::nullopt, seed, py::none(), py::int_(0), py::none());
           }, py::arg("n") = py::none(), py::arg("seed") = py::int_(0),
           R"doc(samples(n=None, seed=0) -> numpy.ndarray [n,1,H,W]

Samples of the model as it is now, by the config's `generate` settings (Model.sample's defaults).)doc")
      .def_property_readonly("model", &PyTrainer::model,
                             "The Model of the run as it is now: a copy of its sampling weights at this call, on the run's "
                             "backend (take it again for newer weights).")
      .def_property_readonly("step", &PyTrainer::step, "Optimizer steps taken.")
      .def_property_readonly("total_steps", &PyTrainer::total_steps, "The step the run ends at.")
      .def_property_readonly("finished", &PyTrainer::finished, "True once the run has ended.")
      .def_property_readonly("output_dir", &PyTrainer::output_dir, "The run folder.")
      .def_property_readonly("config", &PyTrainer::config, "The resolved config (dict).");

  m.def("config_defaults", [] { return ebm::to_python(ebm::config_defaults_json()); },
        "config_defaults() -> dict: every config key with its default (the schema a config dict follows).");
}
