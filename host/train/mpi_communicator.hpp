// The process's communicator: MPI when the launcher (mpirun, srun) started more than one rank, else a
// single-process one, so plain `ebm_train CONFIG` needs neither mpirun nor an MPI library at run time.
// Includes no MPI header: the implementation, host/train/mpi_communicator.cpp, is built against MPI only where
// CMake found it (EBM_HAVE_MPI).
#pragma once
#include <memory>
#include <string>

#include "engine/communicator.hpp"

namespace ebm {

// Where the launcher says this process is, from its environment: Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE/RANK/LOCAL_RANK), Slurm's srun (SLURM_STEP_NUM_TASKS, SLURM_PROCID,
// SLURM_LOCALID) or another PMI launcher (PMI_SIZE, PMI_RANK, MPI_LOCALRANKID). size 1 when none.
struct LaunchEnv {
  int size = 1, rank = 0, local_rank = 0;
  std::string launcher;  // which variables said so ("" when none did)
};
LaunchEnv launch_env();

// MPI (MPI_Init_thread, MPI_THREAD_FUNNELED) when launch_env() reports more than one rank; the
// single-process communicator otherwise. UserError when launched on several ranks by a build without MPI,
// or when MPI's world disagrees with the launcher's (e.g. srun without --mpi=pmix). MPI_Finalize runs when
// the communicator is destroyed.
std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv);

// Whether this build has MPI (CMake found it).
bool mpi_available();

}  // namespace ebm
