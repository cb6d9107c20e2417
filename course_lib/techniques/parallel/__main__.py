"""``python -m course_lib.techniques.parallel`` and ``torchrun ... -m course_lib.techniques.parallel``.

Data-parallel CIFAR-10 training (:func:`course_lib.techniques.parallel.ddp_training.main`);
``--help`` lists the options.
"""

from .ddp_training import main
from .launch import exit_without_teardown

if __name__ == "__main__":
    main()
    exit_without_teardown(0)  # results written, group destroyed: skip a teardown that can abort
