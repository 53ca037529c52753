"""Feedback preprocessor: hidden tests never reach a learner's feedback.

nbgrader restores hidden tests at autograding; its feedback HTML would show their
source and, in tracebacks, the failing assertion line. This removes the hidden
regions and reduces errors of those cells to "ErrorName: message".
"""

from nbgrader.preprocessors import ClearHiddenTests


class ClearHiddenTestsInFeedback(ClearHiddenTests):
    def preprocess_cell(self, cell, resources, cell_index):
        removed = self._remove_hidden_test_region(cell)
        if removed and cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')} (in a hidden test)"]
        return cell, resources
