"""``python -m course_lib.techniques.parallel`` and ``torchrun ... -m course_lib.techniques.parallel``.

Data-parallel CIFAR-10 training (:func:`course_lib.techniques.parallel.ddp_training.main`);
``--help`` lists the options.
"""

from .ddp_training import main

if __name__ == "__main__":
    main()
