"""Face restoration (A1111's "Restore faces" and the Extras tab's GFPGAN and CodeFormer): restorer files in
`models/GFPGAN` and `models/Codeformer` loaded by spandrel (`files.py`), the face detector those folders hold
(`detection_Resnet50_Final.pth`, RetinaFace-ResNet50: `retinaface.py`), and finding, aligning, restoring and
pasting back each face (`restore.py`); which restorer a name means and the infotext, without torch
(`naming.py`)."""
