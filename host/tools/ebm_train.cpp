// ebm_train CONFIG [--set key=value]... [--resume DIR] [--backend auto|cpu|cuda] [--profile-steps A:B]
// Data-parallel: mpirun -np N ebm_train CONFIG ..., or srun --mpi=pmix ebm_train CONFIG ... (README).
#include <unistd.h>

#include <csignal>
#include <iostream>

#include "engine/address_space.hpp"
#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "host/io/config.hpp"
#include "host/tools/cli.hpp"
#include "host/tools/profile_range.hpp"
#include "host/train/distributed.hpp"
#include "host/train/mpi_communicator.hpp"
#include "host/train/training_run.hpp"

namespace {

std::atomic<int> g_stop{0};
// Said once, from the handler (write() is async-signal-safe; the text is composed before it is installed):
// under a launcher that follows SIGTERM with SIGKILL, it is the last word of a rank that was stopped.
char g_signal_note[256];
size_t g_signal_note_len = 0;
// A second signal while the first one's step and checkpoint are still running (a long step, or a user who
// does not want to wait): exit at once, without a checkpoint, as a second Ctrl-C does elsewhere.
constexpr char kSecondSignal[] = "ebm_train: second SIGINT/SIGTERM: exiting now, without a checkpoint\n";
extern "C" void on_signal(int sig) {
  if (g_stop.exchange(1) == 0) {
    if (g_signal_note_len > 0) (void)!write(STDERR_FILENO, g_signal_note, g_signal_note_len);
    return;
  }
  (void)!write(STDERR_FILENO, kSecondSignal, sizeof kSecondSignal - 1);
  _exit(128 + sig);
}

const char* kUsage =
    "usage: ebm_train CONFIG [--set key=value]... [--resume DIR] [--backend auto|cpu|cuda] [--profile-steps A:B]\n"
    "  CONFIG           JSON config (configs/mnist.json is the seed's run)\n"
    "  --set k=v        override any config key, e.g. --set train.epochs=2 --set model.channels=[8,16]\n"
    "  --resume DIR     continue from a checkpoint directory (e.g. runs/mnist/last), bit for bit; with --set\n"
    "                   train.lr, seed, epochs, ... changed (README: what a resumed run may change)\n"
    "  --backend B      auto (CUDA when a device is present), cpu or cuda; overrides the config's\n"
    "  --profile-steps A:B  run steps A..B-1 inside cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)\n"
    "SIGINT/SIGTERM finish the current step, write a checkpoint and exit 0; a second one exits at once.\n"
    "Data-parallel: mpirun -np N ebm_train CONFIG ... (or srun --mpi=pmix): data.batch_size is per rank, rank 0\n"
    "writes logs and checkpoints, SIGTERM to any rank stops all of them after the same step with a checkpoint.\n";

// The prefix of this process's messages: which rank, when there are several.
std::string who(const ebm::Communicator* comm) {
  if (!comm || comm->size() == 1) return "ebm_train: ";
  return "ebm_train [rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->size()) + "]: ";
}

int run(int argc, char** argv, ebm::Communicator& comm) {
  ebm::TrainRunOptions o;
  bool help = false, usage_error = false;
  std::string config_path;
  std::vector<std::string> sets;
  // Every rank parses the same command line; agree() reports a bad one once, from rank 0.
  ebm::agree(comm, [&] {
    ebm::Args args(argc, argv, {"--set", "--resume", "--backend", "--profile-steps"}, {"--help"}, {"--set"});
    if (args.has("--help")) {
      help = true;
      return;
    }
    if (args.positional().empty()) {
      usage_error = true;
      return;
    }
    if (args.positional().size() > 1)
      ebm::user_fail("unexpected argument '", args.positional()[1], "' (one CONFIG; see --help)");
    config_path = args.positional()[0];
    if (config_path.empty()) ebm::user_fail("CONFIG is empty; give a JSON config file (e.g. configs/mnist.json)");
    sets = args.all("--set");
    if (args.has("--backend")) sets.push_back("backend=" + args.str("--backend", "auto"));
    o.config = ebm::load_config(config_path, sets);
    o.config_file = config_path;
    if (args.has("--resume")) o.resume = args.str("--resume", "");
    if (args.has("--profile-steps")) {
      const ebm::StepRange r = ebm::parse_step_range(args.str("--profile-steps", ""));
      o.profile_begin = int(r.begin);
      o.profile_end = int(r.end);
    }
  });
  if (help || usage_error) {
    if (comm.rank() == 0) (help ? std::cout : std::cerr) << kUsage;
    return help ? 0 : 2;
  }
  o.stop = &g_stop;
  o.comm = &comm;
  if (comm.size() > 1) std::cout << "ebm_train: " << comm.describe() << std::endl;  // every rank: where it runs
  if (comm.rank() == 0) {
    std::cout << "config " << config_path << (sets.empty() ? "" : " with --set overrides") << " (resolved):\n";
    const nlohmann::json resolved = ebm::config_to_json(o.config);
    for (const auto& [key, value] : resolved.items()) std::cout << "  " << key << ": " << value.dump() << "\n";
  }
  const std::string note = who(&comm) + "SIGINT/SIGTERM: stopping " +
                           (comm.size() > 1 ? "every rank after this step" : "after this step") +
                           ", with a checkpoint\n";
  g_signal_note_len = note.copy(g_signal_note, sizeof g_signal_note);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  return ebm::run_training(o);
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<ebm::Communicator> comm;
  try {
    comm = ebm::make_world_communicator(&argc, &argv);
    return run(argc, argv, *comm);
  } catch (const ebm::SharedUserError& e) {  // every rank has it: rank 0 says it once, all exit normally
    if (comm->rank() == 0) std::cerr << "ebm_train: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // One rank's failure: say which rank, then end the whole job (MPI_Abort), or the others would wait for
    // it until their collective timeout.
    const bool plain = dynamic_cast<const ebm::UserError*>(&e) || dynamic_cast<const ebm::CommError*>(&e);
    if (dynamic_cast<const std::bad_alloc*>(&e))
      std::cerr << who(comm.get()) << "out of memory (" << e.what() << "): lower buffer.capacity, data.batch_size "
                << "or model.channels, or free memory" << ebm::address_space_hint() << std::endl;
    else
      std::cerr << who(comm.get()) << (plain ? "" : "internal error: ") << e.what() << std::endl;
    if (comm && comm->size() > 1) comm->abort(1);
    return 1;
  }
}
