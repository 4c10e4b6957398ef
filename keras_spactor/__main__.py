import sys

from keras_spactor.cli import main

sys.exit(main())
