# COST of the slowest GoogleTest cases, read by ctest after the discovered tests are defined (CMakeLists.txt adds
# this file to TEST_INCLUDE_FILES after gtest_discover_tests). A parallel ctest starts the costliest tests first; on
# a clean checkout (CI) it has no timings of its own, and would otherwise start them in file order and end the run
# with one of them running alone. Seconds under ASan on 2 cores, roughly; a name that no longer exists is ignored.
set_tests_properties(TrainingRunTest.MsPerStepLeavesOutValidationAndPictures PROPERTIES COST 20)
set_tests_properties(TiledChainTf32.EnergiesAfter40StepsStayWithinABandOfFp32 PROPERTIES COST 20)
set_tests_properties(ParityHarness.CpuWithinAQuarterOfEachTolerance PROPERTIES COST 16)
set_tests_properties(ChainModel.SeedNetKernelsMeetTheirTargets PROPERTIES COST 13)
set_tests_properties(ParityHarness.Op/loss_gradient_wide_b128_n224 PROPERTIES COST 13)
set_tests_properties(EvalQualityTest.TheClassifierLearnsTheClassesAndIsTrainedOnce PROPERTIES COST 12)
