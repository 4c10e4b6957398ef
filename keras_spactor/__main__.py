import sys

from keras_spactor._cli_startup import main

sys.exit(main())
