# The Python module ebm_engine (host/python/): built where Python's headers and pybind11 are found, for one
# interpreter — /usr/bin/python3 (Debian's, whose python3-numpy, python3-pytest and Jupyter the tests use) where
# it exists, else `python3` on PATH; EBM_PYTHON_EXECUTABLE picks another. Defines EBM_HAVE_PYTHON, and
# EBM_PYTHON_WHY (why not, for the configure summary). FindPython (Python_*), not FindPython3 (Python3_*): the
# CUDA part looks up pip wheels with whatever python3 comes first on PATH, which may be another interpreter.
option(EBM_PYTHON "Build the Python module ebm_engine (pybind11) where Python's headers and pybind11 are found" ON)
set(EBM_PYTHON_EXECUTABLE "" CACHE FILEPATH "The interpreter the Python module is built for (default /usr/bin/python3)")
set(EBM_HAVE_PYTHON FALSE)
set(EBM_PYTHON_WHY "")
if(NOT EBM_PYTHON)
  set(EBM_PYTHON_WHY "off (EBM_PYTHON=OFF)")
elseif(EBM_SANITIZE)
  set(EBM_PYTHON_WHY "not in sanitizer builds (the interpreter is not instrumented)")
else()
  if(EBM_PYTHON_EXECUTABLE)
    set(Python_EXECUTABLE "${EBM_PYTHON_EXECUTABLE}")
  elseif(NOT Python_EXECUTABLE AND EXISTS /usr/bin/python3)
    set(Python_EXECUTABLE /usr/bin/python3)
  endif()
  find_package(Python 3.8 QUIET COMPONENTS Interpreter Development.Module)
  if(NOT Python_Development.Module_FOUND)
    set(EBM_PYTHON_WHY "no Python headers for ${Python_EXECUTABLE} (Debian: python3-dev)")
  else()
    find_package(pybind11 2.6 CONFIG QUIET)
    if(NOT pybind11_FOUND)
      set(EBM_PYTHON_WHY "pybind11 not found (Debian: pybind11-dev)")
    else()
      set(EBM_HAVE_PYTHON TRUE)
      # The static engine libraries are linked into a shared module.
      set(CMAKE_POSITION_INDEPENDENT_CODE ON)
    endif()
  endif()
endif()
